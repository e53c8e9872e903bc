"""Per-trial overhead of a study: an in-process Tune trial (actors reused) and a DDP trial (a Ray
Train TorchTrainer per trial), against the same training called directly in this process.

Each study runs N tiny trials one at a time (max_concurrent 1, so wall time / N is per trial);
overhead = wall time per trial − the direct run's time. Ray's start-up is excluded (Ray is
started once, before timing). Medians over --repeats.

    python benchmarks/tune_overhead.py --trials 4 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.engine.loop import train
from raygan.study import Factor, Profile, Study, expand, study_hash
from raygan.tune.driver import run_plan
from raygan.tune.plan import Plan, RunOptions

# A trial that trains almost nothing: what remains of its wall time is overhead.
BASE = {"method": "autoencoder", "model": {"backbone": "naive", "latent_size": 8},
        "train": {"epochs": 1, "batch_size": 32, "threads": 1}}


def tiny_study(trials: int) -> Study:
    return Study(
        name="overhead", reproduces="benchmark", caption="", base=BASE,
        factors=(Factor("lr", tuple(1e-3 * (1 + i) for i in range(trials)), key="train.lr"),),
        profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (0,)}, seeds=(0,))},
    )


def timed_study(trials: int, storage: Path, workers_per_trial: int) -> float:
    study = tiny_study(trials)
    expanded = expand(study, study.profile("smoke"))
    plan = Plan(study, "smoke", study_hash(study, "smoke", expanded, None), trials=tuple(expanded), epochs=1)
    options = RunOptions(storage=storage, max_concurrent=1, workers_per_trial=workers_per_trial)
    started = time.perf_counter()
    run_plan(plan, options)
    return (time.perf_counter() - started) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-ddp", action="store_true")
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=2, log_to_driver=False, configure_logging=False)
    cfg = RunConfig.from_dict({**BASE, "data": {"dataset": "digits", "class_index": 0}})
    direct, inprocess, ddp = [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            train(cfg, out_dir=Path(tmp) / "direct")
            direct.append(time.perf_counter() - started)
            inprocess.append(timed_study(args.trials, Path(tmp) / "inprocess", 0))
            if not args.skip_ddp:
                ddp.append(timed_study(args.trials, Path(tmp) / "ddp", 2))
        print(f"repeat {repeat}: direct {direct[-1]:.2f} s, in-process trial {inprocess[-1]:.2f} s"
              + (f", DDP trial {ddp[-1]:.2f} s" if ddp else ""), flush=True)
    d = statistics.median(direct)
    print(f"\nper-trial time, median of {args.repeats} (trials of {args.trials}, one at a time):")
    print(f"  direct loop.train in this process : {d:6.2f} s")
    i = statistics.median(inprocess)
    print(f"  in-process Tune trial (reuse)     : {i:6.2f} s  overhead {i - d:6.2f} s")
    if ddp:
        m = statistics.median(ddp)
        print(f"  DDP trial (2 workers, TorchTrainer): {m:6.2f} s  overhead {m - d:6.2f} s")


if __name__ == "__main__":
    main()
