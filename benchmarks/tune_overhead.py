"""Overhead per instance beyond training.

1. Data preparation per instance, in CPU-seconds of this process (robust to other jobs on the
   machine): the instances of a search (several classes and seeds of one data set) prepared one
   after another, each run preparing its own data (decode the files, split, resize) against a
   process that keeps its prepared data (raygan.data.prepared), both in the same run.
2. Wall time per Tune trial (a trial is one instance): an in-process Tune trial, with and without
   kept data, and a DDP trial (a Ray Train TorchTrainer per trial), against the same training
   called directly in this process on data prepared beforehand. Each study runs N tiny trials one
   at a time (max_concurrent 1, so wall time / N is per trial); overhead = wall time per trial −
   the direct training time. Ray's start-up is excluded (started once, before timing). Wall times
   move with the machine's load: the load average is printed beside them.

Medians over --repeats.

    python benchmarks/tune_overhead.py --instances 6 --repeats 3 --skip-tune
    python benchmarks/tune_overhead.py --trials 4 --repeats 3 --skip-ddp
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.data.prepared import PreparedData
from raygan.engine.loop import load_split_tensors, train
from raygan.study import Factor, Profile, Study, expand, study_hash
from raygan.tune.driver import run_plan
from raygan.tune.plan import Plan, RunOptions


def base(dataset: str) -> dict:
    # A trial that trains almost nothing (one epoch of a small autoencoder): what remains of its
    # wall time beyond the direct training is overhead.
    return {"method": "autoencoder", "model": {"backbone": "naive", "latent_size": 8},
            "train": {"epochs": 1, "batch_size": 256, "threads": 1}, "data": {"dataset": dataset, "class_index": 0}}


def tiny_study(trials: int, dataset: str) -> Study:
    return Study(
        name="overhead", reproduces="benchmark", caption="", base=base(dataset),
        factors=(Factor("lr", tuple(1e-3 * (1 + i) for i in range(trials)), key="train.lr"),),
        profiles={"smoke": Profile(datasets=(dataset,), classes={dataset: (0,)}, seeds=(0,))},
    )


def timed_study(trials: int, dataset: str, storage: Path, workers_per_trial: int, keep_data: bool = True) -> float:
    study = tiny_study(trials, dataset)
    expanded = expand(study, study.profile("smoke"))
    plan = Plan(study, "smoke", study_hash(study, "smoke", expanded, None), trials=tuple(expanded), epochs=1)
    options = RunOptions(storage=storage, max_concurrent=1, workers_per_trial=workers_per_trial, keep_data=keep_data)
    started = time.perf_counter()
    run_plan(plan, options)
    return (time.perf_counter() - started) / trials


def preparation_cpu_seconds(dataset: str, instances: int) -> tuple[list[float], list[float]]:
    """CPU-seconds to prepare each of ``instances`` instances (classes x seeds) of ``dataset``:
    every run on its own, and one process keeping its prepared data (the first instance pays)."""
    base_cfg = RunConfig.from_dict(base(dataset)).data
    configs = [dataclasses.replace(base_cfg, class_index=i % 5, seed=i // 5) for i in range(instances)]
    own, kept, prepared = [], [], PreparedData()
    for cfg in configs:
        started = time.process_time()
        load_split_tensors(RunConfig(data=cfg))
        own.append(time.process_time() - started)
        started = time.process_time()
        prepared.split(cfg)
        kept.append(time.process_time() - started)
    return own, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=6, help="instances prepared in part 1")
    parser.add_argument("--trials", type=int, default=4, help="Tune trials per study in part 2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default="fashion_mnist",
                        help="fashion_mnist (60,000 28x28 images resized to 32x32; Debian's dataset-fashion-mnist) "
                             "or digits (offline, tiny: little to prepare)")
    parser.add_argument("--skip-tune", action="store_true", help="part 1 only")
    parser.add_argument("--skip-ddp", action="store_true")
    args = parser.parse_args()
    if min(args.instances, args.trials, args.repeats) < 1:
        parser.error("--instances, --trials and --repeats must be >= 1")

    import torch

    torch.set_num_threads(1)  # as a trial runs (one thread each); CPU-seconds then count one core
    own_cpu, kept_cpu = [], []
    for repeat in range(args.repeats):
        own, kept = preparation_cpu_seconds(args.dataset, args.instances)
        own_cpu.append(statistics.mean(own))
        kept_cpu.append(statistics.mean(kept))
        print(f"repeat {repeat}: data preparation per instance {own_cpu[-1]:.3f} CPU-s (own) / {kept_cpu[-1]:.3f} "
              f"CPU-s (kept; first instance {kept[0]:.3f}, the others {statistics.mean(kept[1:] or kept):.3f})",
              flush=True)
    print(f"\n{args.dataset}, {args.instances} instances (classes x seeds) one after another, median of "
          f"{args.repeats}: data preparation per instance {statistics.median(own_cpu):.3f} CPU-s when each run "
          f"prepares its own, {statistics.median(kept_cpu):.3f} CPU-s when the process keeps its prepared data")
    if args.skip_tune:
        return

    import ray

    ray.init(num_cpus=2, log_to_driver=False, configure_logging=False)
    cfg = RunConfig.from_dict(base(args.dataset))
    prepare, direct, own, kept, ddp = [], [], [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            tensors, _ = load_split_tensors(cfg)
            prepare.append(time.perf_counter() - started)
            started = time.perf_counter()
            train(cfg, out_dir=Path(tmp) / "direct", tensors=tensors)
            direct.append(time.perf_counter() - started)
            own.append(timed_study(args.trials, args.dataset, Path(tmp) / "own", 0, keep_data=False))
            kept.append(timed_study(args.trials, args.dataset, Path(tmp) / "kept", 0, keep_data=True))
            if not args.skip_ddp:
                ddp.append(timed_study(args.trials, args.dataset, Path(tmp) / "ddp", 2))
        print(f"repeat {repeat}: prepare data {prepare[-1]:.2f} s, train {direct[-1]:.2f} s, in-process trial "
              f"{own[-1]:.2f} s (own data) / {kept[-1]:.2f} s (kept data)"
              + (f", DDP trial {ddp[-1]:.2f} s" if ddp else "") + f"; load average {os.getloadavg()[0]:.1f}",
              flush=True)
    d = statistics.median(direct)
    print(f"\n{args.dataset}: per-trial (= per-instance) wall time, median of {args.repeats} "
          f"(trials of {args.trials}, one at a time):")
    print(f"  preparing the data directly (decode, split, resize): {statistics.median(prepare):6.2f} s")
    print(f"  direct loop.train on prepared data                 : {d:6.2f} s")
    rows = [("in-process trial, prepares its own data", own), ("in-process trial, keeps prepared data", kept)]
    if ddp:
        rows.append(("DDP trial (2 workers, TorchTrainer)", ddp))
    for label, times in rows:
        m = statistics.median(times)
        print(f"  {label:<51}: {m:6.2f} s  overhead {m - d:6.2f} s")


if __name__ == "__main__":
    main()
