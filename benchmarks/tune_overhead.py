"""Overhead per instance beyond training: an in-process Tune trial, with and without the worker
process keeping its prepared data (raygan.data.prepared), and a DDP trial (a Ray Train
TorchTrainer per trial), against the same training called directly in this process on data
prepared beforehand.

Each study runs N tiny trials one at a time (max_concurrent 1, so wall time / N is per trial, and
a trial is one instance); overhead = wall time per trial − the direct training time. Ray's
start-up is excluded (Ray is started once, before timing). Both in-process variants run in every
repeat, so "prepares its own data" and "keeps prepared data" are measured side by side. Medians
over --repeats.

    python benchmarks/tune_overhead.py --trials 6 --repeats 3 --skip-ddp
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.engine.loop import load_split_tensors, train
from raygan.study import Factor, Profile, Study, expand, study_hash
from raygan.tune.driver import Plan, RunOptions, run_plan


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default="fashion_mnist",
                        help="fashion_mnist (60,000 28x28 images resized to 32x32; Debian's dataset-fashion-mnist) "
                             "or digits (offline, tiny: little to prepare)")
    parser.add_argument("--skip-ddp", action="store_true")
    args = parser.parse_args()
    if args.trials < 1 or args.repeats < 1:
        parser.error("--trials and --repeats must be >= 1")

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
              + (f", DDP trial {ddp[-1]:.2f} s" if ddp else ""), flush=True)
    d = statistics.median(direct)
    print(f"\n{args.dataset}: per-trial (= per-instance) time, median of {args.repeats} "
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
