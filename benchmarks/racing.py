"""Racing against evaluating every configuration on every instance and against successive halving
over instances, on a synthetic objective whose truth is known, through real Ray Tune.

The objective mimics a search over instances (data set, class, seed): configuration c scored on
instance i gives

    value(c, i) = mean_c + difficulty_i + noise_{c,i}

with a difficulty per instance shared by every configuration (a hard class, a lucky seed: it
cancels in a paired comparison) and seed noise per (configuration, instance). The means are drawn
per benchmark seed, so the true best configuration is known. Each method runs the same
configurations in the same order through a `tune.Tuner` (grid over configuration ids, stub
trainable that reports once per instance):

- full: every configuration on every instance (FIFO);
- racing: `RacingScheduler` (paired one-sided test against the incumbent, see raygan.study.racing);
- halving: Ray's ASHAScheduler with time_attr = instances completed, on the running mean.

The winner of every method is the incumbent of its run history (best mean among the
configurations with the most instances). Printed: medians over seeds of the instance-runs spent,
of the winner's regret (true best mean − the winner's true mean) and the share of seeds on which
the winner was the true best.

    python benchmarks/racing.py --seeds 7
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raygan.study.racing import Race, RacingRule


@dataclass(frozen=True)
class SyntheticObjective:
    """Known truth: ``means[c]`` is configuration c's expected value over instances."""

    means: tuple[float, ...]
    instances: int = 6
    difficulty_sd: float = 0.05  # spread of instance difficulty (shared by every configuration)
    noise_sd: float = 0.02  # seed noise of one (configuration, instance) run
    seed: int = 0

    @classmethod
    def drawn(cls, configs: int, seed: int, low: float = 0.75, high: float = 0.90, **kwargs) -> SyntheticObjective:
        rng = np.random.default_rng([seed, 1])
        return cls(tuple(float(m) for m in rng.uniform(low, high, configs)), seed=seed, **kwargs)

    @property
    def best(self) -> int:
        return int(np.argmax(self.means))

    def _normal(self, *key) -> float:
        digest = hashlib.sha256(repr((self.seed, *key)).encode()).digest()
        return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())

    def value(self, config: int, instance: int) -> float:
        return (self.means[config] + self.difficulty_sd * self._normal("instance", instance)
                + self.noise_sd * self._normal("noise", config, instance))


def synthetic_trial(config: dict, objective: SyntheticObjective, delay: float = 0.0) -> None:
    """A Tune function trainable: one report per instance, in the fixed order 0, 1, ..."""
    from ray import tune

    from raygan.tune.racing import INSTANCE, INSTANCE_VALUE, INSTANCES_DONE, MEAN_VALUE

    done: list[float] = []
    for instance in range(objective.instances):
        if delay:
            time.sleep(delay)  # concurrent trials interleave instance by instance, as real ones do
        done.append(objective.value(int(config["config_id"]), instance))
        tune.report({INSTANCE: instance, INSTANCE_VALUE: done[-1], MEAN_VALUE: sum(done) / len(done),
                     INSTANCES_DONE: len(done), "config_id": int(config["config_id"])})


@dataclass(frozen=True)
class Outcome:
    values: dict[int, dict[int, float]]  # configuration -> {instance: value}
    winner: int
    instance_runs: int


def outcome(values: dict[int, dict[int, float]]) -> Outcome:
    race = Race()
    for config, by_instance in values.items():
        race.record_many(config, by_instance.items())
    return Outcome(values, race.incumbent(), race.instance_runs())


def instance_log():
    """A Tune callback that keeps every report's (configuration, instance, value) in the driver
    (in ``.values``), read from the reports themselves rather than from Tune's result files."""
    from ray.tune import Callback

    from raygan.tune.racing import INSTANCE, INSTANCE_VALUE

    class InstanceLog(Callback):
        def __init__(self) -> None:
            self.values: dict[int, dict[int, float]] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.values.setdefault(int(result["config_id"]), {})[int(result[INSTANCE])] = float(result[INSTANCE_VALUE])

    return InstanceLog()


def run_search(objective: SyntheticObjective, order: list[int], storage: Path, scheduler=None, search_alg=None,
               max_concurrent: int = 1, delay: float = 0.0, name: str = "racing"):
    """Tune over ``order`` (configuration ids; a grid unless ``search_alg`` samples them). Returns
    Tune's ResultGrid and configuration -> {instance: value} of every report."""
    import os

    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then prints nothing per search
    log = instance_log()
    param_space = {"config_id": tune.grid_search(order)} if search_alg is None else None
    tuner = tune.Tuner(
        tune.with_parameters(synthetic_trial, objective=objective, delay=delay),
        param_space=param_space,
        tune_config=tune.TuneConfig(scheduler=scheduler, search_alg=search_alg, max_concurrent_trials=max_concurrent,
                                    num_samples=1 if search_alg is None else len(order), reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[log]),
    )
    return tuner.fit(), log.values


def schedulers(objective: SyntheticObjective, grace: int, reduction: int, p_value: float, min_instances: int) -> dict:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from raygan.tune.racing import INSTANCES_DONE, MEAN_VALUE, RacingScheduler

    return {
        "full": lambda: FIFOScheduler(),
        "racing (t)": lambda: RacingScheduler(RacingRule("t", p_value, min_instances), records=None),
        "racing (wilcoxon)": lambda: RacingScheduler(RacingRule("wilcoxon", p_value, max(min_instances, 4)),
                                                     records=None),
        f"halving (grace {grace}, ÷{reduction})": lambda: ASHAScheduler(
            time_attr=INSTANCES_DONE, metric=MEAN_VALUE, mode="max", max_t=objective.instances,
            grace_period=grace, reduction_factor=reduction),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--instances", type=int, default=6)
    parser.add_argument("--difficulty-sd", type=float, default=0.05)
    parser.add_argument("--noise-sd", type=float, default=0.02)
    parser.add_argument("--p-value", type=float, default=0.1)
    parser.add_argument("--min-instances", type=int, default=3)
    parser.add_argument("--grace", type=int, default=1, help="successive halving: instances before the first cut")
    parser.add_argument("--reduction", type=int, default=2, help="successive halving: keep 1 in this many")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per instance (lets trials interleave)")
    args = parser.parse_args()
    if min(args.seeds, args.configs, args.instances, args.concurrent) < 1 or args.configs < 2:
        parser.error("--seeds, --instances and --concurrent must be >= 1 and --configs >= 2")

    import ray

    ray.init(num_cpus=max(2, args.concurrent), log_to_driver=False, configure_logging=False)
    rows: dict[str, list[tuple[int, float, bool]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            objective = SyntheticObjective.drawn(args.configs, seed, instances=args.instances,
                                                 difficulty_sd=args.difficulty_sd, noise_sd=args.noise_sd)
            order = [int(c) for c in np.random.default_rng([seed, 2]).permutation(args.configs)]
            made = schedulers(objective, args.grace, args.reduction, args.p_value, args.min_instances)
            line = [f"seed {seed}: best {objective.best}"]
            for index, (method, make) in enumerate(made.items()):
                _, values = run_search(objective, order, Path(tmp), scheduler=make(), max_concurrent=args.concurrent,
                                     delay=args.delay, name=f"s{seed}-m{index}")
                found = outcome(values)
                regret = objective.means[objective.best] - objective.means[found.winner]
                rows.setdefault(method, []).append((found.instance_runs, regret, found.winner == objective.best))
                line.append(f"{method} {found.instance_runs} runs -> {found.winner}")
            print(", ".join(line), flush=True)
    full_runs = args.configs * args.instances
    print(f"\n{args.configs} configurations x {args.instances} instances (full: {full_runs} instance-runs), "
          f"difficulty SD {args.difficulty_sd}, noise SD {args.noise_sd}, {args.concurrent} trials at once; "
          f"medians over {args.seeds} seeds ({time.perf_counter() - started:.0f} s)")
    print(f"{'method':<28} {'instance-runs':>13} {'of full':>8} {'found best':>11} {'regret':>8}")
    for method, outcomes in rows.items():
        runs = statistics.median(o[0] for o in outcomes)
        hits = sum(o[2] for o in outcomes)
        print(f"{method:<28} {runs:>13.0f} {runs / full_runs:>8.0%} {hits:>5}/{len(outcomes):<5} "
              f"{statistics.median(o[1] for o in outcomes):>8.4f}")


if __name__ == "__main__":
    main()
