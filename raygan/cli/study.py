"""Front door shared by every study script (``python studies/<name>.py``) and ``raygan study run``.

Same flags everywhere: --profile, --dry-run, --storage, --resume, --address, --max-concurrent,
the profile extensions (--datasets, --classes, --seeds, --epochs, --samples), and where trials
run (--cpus-per-trial, --gpus-per-trial, --workers-per-trial). A dry run prints the trials and
ends with one JSON line; a real run ends with the report table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from raygan.cli.boundary import OneLineParser, finite_float, guarded
from raygan.core.errors import RayganError, without_password
from raygan.study import (
    Study,
    estimate_worker_hours,
    expand,
    narrow_profile,
    search_instances,
    study_hash,
)
from raygan.tune.plan import Plan, RunOptions, study_dir_for

DEFAULT_STORAGE = "~/raygan-studies"

# The environment variables raygan reads (or passes to Ray), for the epilogs of --help.
ENVIRONMENT = {
    "RAYGAN_DATA": "a directory searched for data set files after --data-root",
    "RAYGAN_CACHE": "where downloads are cached (default: $XDG_CACHE_HOME/raygan or ~/.cache/raygan)",
    "RAYGAN_STORAGE": f"where studies live without --storage (default: {DEFAULT_STORAGE})",
    "RAYGAN_PROGRESS_SECONDS": "how often a study's status line is printed again in a log (default: 30)",
    "RAYGAN_CONFIRM_CONFIG": "hpo_confirm: the search's best_config.json (default: the committed export's)",
    "RAY_worker_niceness": "niceness of Ray's workers (Ray's default: 15); 0: normal priority, 19: idle CPU only",
    "RAY_ADDRESS": "a running Ray to join (set inside `ray job submit`; --address auto finds it)",
}
STUDY_EXAMPLES = """examples:
  python studies/bn_ablation.py --profile smoke              # minutes on a laptop, offline data
  python studies/bn_ablation.py --profile paper --dry-run    # the trials and their estimated cost
  python studies/bn_ablation.py --profile cpu --resume       # continue (or grow) a study
  python studies/hpo.py --profile cpu --optuna-storage postgresql://user:pw@head:5432/optuna
  python studies/bn_ablation.py --profile paper --address auto --gpus-per-trial 0.25 --max-failures 3"""


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions and epilogs wrap paragraph by paragraph; indented lines (examples, lists) stay
    as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if any(line.startswith(" ") for line in lines):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)


def environment(*names: str) -> str:
    """The epilog paragraph naming the environment variables a command reads."""
    names = names or tuple(ENVIRONMENT)
    width = max(map(len, names))
    return "environment:\n" + "\n".join(f"  {n:{width}s}  {ENVIRONMENT[n]}" for n in names)


def profiles_epilog(study: Study) -> str:
    return "profiles:\n" + "\n".join(f"  {n}: {p.description}" for n, p in study.profiles.items())


STUDY_ENVIRONMENT = ("RAYGAN_STORAGE", "RAYGAN_DATA", "RAYGAN_CACHE", "RAYGAN_PROGRESS_SECONDS",
                     "RAYGAN_CONFIRM_CONFIG", "RAY_worker_niceness", "RAY_ADDRESS")


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="smoke",
                        help="smoke (offline data, minutes on 2 CPU cores) | cpu (real Fashion-MNIST, hours on 2 CPU cores: "
                             "the committed runs took 71-242 min) | paper (the full protocol); the study's own are "
                             "listed under `--help` with its NAME; default: smoke")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the trials, their count and estimated CPU-worker-hours; run nothing")
    parser.add_argument("--device-profile", type=Path, default=None, metavar="FILE",
                        help="--dry-run: also estimate GPU-hours from this device profile (benchmarks/gpu.py)")
    parser.add_argument("--gpus", type=int, default=1, metavar="N",
                        help="--dry-run with --device-profile: the wall time on N such GPUs (default: 1)")
    parser.add_argument("--storage", type=Path, default=None,
                        help=f"where studies live (default: $RAYGAN_STORAGE or {DEFAULT_STORAGE}); "
                             "the study's directory is <storage>/<study>; on several nodes a shared file system "
                             "(NFS, EFS) mounted at the same path on every node")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted study (Tuner.restore): finished trials are kept, not rerun")
    parser.add_argument("--address", default=None,
                        help="an existing Ray cluster ('auto', host:port or ray://...; 'auto' inside `ray job submit`); "
                             "default: start a local one")
    parser.add_argument("--max-concurrent", type=int, default=None, help="trials running at once (default: as resources allow; searches: 1)")
    extend = parser.add_argument_group("extend or narrow the profile")
    extend.add_argument("--datasets", nargs="+", default=None, metavar="NAME", help="data sets (raygan data list)")
    extend.add_argument("--classes", nargs="+", type=int, default=None, metavar="K", help="classes, for every data set")
    extend.add_argument("--seeds", nargs="+", type=int, default=None, metavar="S", help="seeds (each cell repeats over them)")
    extend.add_argument("--epochs", type=int, default=None, help="training epochs per trial")
    extend.add_argument("--samples", type=int, default=None, help="searches: number of Optuna trials")
    extend.add_argument("--data-root", default=None, help="directory holding the data set files (data.data_root)")
    where = parser.add_argument_group("where trials run")
    where.add_argument("--cpus-per-trial", type=finite_float, default=1.0, help="CPUs of an in-process trial (torch threads)")
    where.add_argument("--gpus-per-trial", type=finite_float, default=0.0,
                       help="GPUs per trial; fractions pack several 32x32 trials on one GPU (cluster only)")
    where.add_argument("--workers-per-trial", type=int, default=0,
                       help="N >= 1: each trial runs a Ray Train DDP trainer with N workers; 0 (default): in-process")
    where.add_argument("--cpus-per-worker", type=finite_float, default=0.9, help="CPUs per DDP worker with --workers-per-trial")
    where.add_argument("--max-failures", type=int, default=0,
                       help="retries of a trial whose process or node died, on any node, from its last checkpoint; "
                            "configuration errors and NaN losses are recorded as failed, not retried")
    where.add_argument("--search-seed", type=int, default=0, help="searches: the Optuna sampler's seed")
    where.add_argument("--optuna-storage", default=None, metavar="URL",
                       help="searches: the Optuna storage (SQLAlchemy URL, e.g. postgresql://user:pw@head:5432/optuna); "
                            "default: sqlite:///<study dir>/optuna.db (SQLite serves this one driver; use a server when "
                            "several drivers share a database)")
    parser.add_argument("--keep-checkpoints", default="selected", choices=("selected", "all", "none"),
                        help="what a finished trial keeps: selected (default: checkpoints/selected.pt, the detector; "
                             "last.pt, only needed to resume, is deleted), all, or none (also selected.pt: no "
                             "raygan score, no reconstruction figures). Unfinished trials keep theirs to resume")


def make_plan(study: Study, args: argparse.Namespace) -> Plan:
    profile = narrow_profile(study.profile(args.profile), args.datasets, args.classes, args.seeds, args.epochs,
                             getattr(args, "samples", None))
    overrides = {"data": {"data_root": str(Path(args.data_root).expanduser().resolve())}} if args.data_root else None
    if study.is_search:
        if not profile.samples:
            raise RayganError(f"search {study.name}: profile {args.profile} sets no sample count; pass --samples")
        instances = search_instances(study, profile, overrides)
        base = instances[0]
        # A one-instance search hashes as it always did: its directory and Optuna study stay its own.
        hashed = base if len(instances) == 1 else list(instances)
        return Plan(study, args.profile, study_hash(study, args.profile, hashed, profile.samples), base=base,
                    samples=profile.samples, epochs=base.config["train"]["epochs"],
                    instances=instances if len(instances) > 1 else ())
    trials = expand(study, profile, overrides)
    return Plan(study, args.profile, study_hash(study, args.profile, trials, None), trials=tuple(trials),
                epochs=max(t.config["train"]["epochs"] for t in trials))


def options_from(args: argparse.Namespace) -> RunOptions:
    storage = args.storage or Path(os.environ.get("RAYGAN_STORAGE", DEFAULT_STORAGE))
    return RunOptions(
        storage=Path(storage).expanduser().resolve(),
        resume=args.resume,
        address=args.address,
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial,
        cpus_per_worker=args.cpus_per_worker,
        max_failures=args.max_failures,
        search_seed=args.search_seed,
        optuna_storage=args.optuna_storage,
        keep_checkpoints=args.keep_checkpoints,
    )


def dry_run(plan: Plan, device_profile: Path | None = None, gpus: int = 1) -> None:
    from raygan.engine.cost import DeviceProfile, cpu_seconds_range, gpu_estimate

    if gpus < 1:
        raise RayganError(f"--gpus must be >= 1; got {gpus}")
    profile = DeviceProfile.load(device_profile) if device_profile is not None else None
    if plan.study.is_search:
        if plan.instances:
            print(f"search {plan.study.name}: up to {plan.samples} Optuna trials, each on up to {len(plan.instances)} "
                  f"instances in this order (racing stops weak ones early):")
            for instance in plan.instances:
                print(json.dumps(instance.as_dict()))
        else:
            print(f"search {plan.study.name}: up to {plan.samples} Optuna trials (ASHA stops weak ones early) on")
            print(json.dumps(plan.base.as_dict()))
        configs = [t.config for t in (plan.instances or (plan.base,))] * plan.samples
    else:
        configs = [t.config for t in plan.trials]
        for trial in plan.trials:
            low, high = cpu_seconds_range(trial.config)
            span = f"{low / 3600:.3f}" if round(low) == round(high) else f"{low / 3600:.3f}-{high / 3600:.3f}"
            gpu = f"\t{profile.seconds_alone(trial.config):.0f} s alone on the GPU" if profile else ""
            print(f"{trial.key}\t{span} h on one CPU thread{gpu}")
    # A trial holds one torch thread and a 2-core worker runs two at once: worker-hours are half
    # the trials' hours.
    ranges = [cpu_seconds_range(c) for c in configs]
    low, high = (sum(r[i] for r in ranges) / 3600 / 2 for i in (0, 1))
    hours, count = estimate_worker_hours(configs) / 2, len(configs)
    span = f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g}-{high:.3g}"
    unit = "instance-runs at most" if plan.instances else "trials"
    print(f"{plan.study.name} ({plan.study.reproduces}), profile {plan.profile}: {count} {unit}, "
          f"about {span} CPU-worker-hours (2-core workers, two one-thread trials at a time; the model: "
          f"docs/cost.md)")
    summary = {"study": plan.study.name, "profile": plan.profile,
               **({"trials": plan.samples, "instance_runs": count} if plan.instances else {"trials": count}),
               "estimated_worker_hours": round(hours, 3), "estimated_worker_hours_range": [round(low, 3), round(high, 3)]}
    if profile is not None:
        estimate = gpu_estimate(profile, configs, gpus)
        note = " (a --quick profile: not for planning)" if profile.quick else ""
        print(f"on {profile.device}{note}: {estimate['gpu_hours']:.3g} GPU-hours at {profile.best_k} trials per GPU "
              f"at once (the measured best packing, --gpus-per-trial {1 / profile.best_k:g}); "
              f"{estimate['wall_hours']:.3g} h on {gpus} GPU(s)")
        summary.update({"estimated_gpu_hours": round(estimate["gpu_hours"], 4), "gpus": gpus,
                        "estimated_wall_hours": round(estimate["wall_hours"], 4),
                        "trials_per_gpu": profile.best_k, "device": profile.device})
    print(json.dumps(summary))


def run(study: Study, args: argparse.Namespace) -> int:
    from raygan.analysis.parquet import write_results
    from raygan.analysis.report import report
    from raygan.store.records import read_records
    from raygan.tune.driver import run_plan

    plan = make_plan(study, args)
    options = options_from(args)
    options.check()  # a dry run refuses what a real run would (--max-concurrent 0, ...)
    if args.dry_run:
        dry_run(plan, args.device_profile, args.gpus)
        return 0
    study_dir = run_plan(plan, options)
    results, rows = write_results(study_dir)
    print(report(study_dir))
    records = read_records(study_dir)
    counts = {s: sum(r["status"] == s for r in records) for s in ("finished", "stopped", "failed")}
    for r in records:
        if r["status"] == "failed":
            print(f"raygan: trial {r['trial_key']} failed: {r['error']}", file=sys.stderr)
    print(f"results: {results}; TensorBoard: tensorboard --logdir {study_dir}; table: raygan report {study_dir}",
          file=sys.stderr)
    print(json.dumps({"study": study.name, "profile": plan.profile, "trials": rows, **counts,
                      "study_dir": str(study_dir), "results": str(results)}))
    return 0


def main(study: Study, argv: Sequence[str] | None = None) -> None:
    """Entry point of a study script: ``python studies/<name>.py [flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Errors name the command as it was run: a study is often one line of a longer script or job.
    # passwords in URLs (--optuna-storage postgresql://user:pw@host/db) never reach a message
    command = " ".join([f"python studies/{study.name}.py", *map(shlex.quote, map(without_password, argv))])
    parser = _Parser(
        command,
        prog=f"python studies/{study.name}.py",
        description=study.caption,
        formatter_class=HelpFormatter,
        epilog="\n\n".join((profiles_epilog(study), STUDY_EXAMPLES.replace("bn_ablation", study.name),
                             environment(*STUDY_ENVIRONMENT))),
    )
    add_study_arguments(parser)
    args = parser.parse_args(argv)

    def interrupted() -> str:
        where = study_dir_for(options_from(args).storage, study)
        return f"raygan: interrupted; continue with the same command plus --resume ({where})"

    sys.exit(guarded(lambda: run(study, args), f"raygan: error in {command}", interrupted,
                     lambda: study_dir_for(options_from(args).storage, study)))


class _Parser(OneLineParser):
    """argparse's usage errors in raygan's one-line form, naming the command as it was run."""

    def __init__(self, command: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.command = command

    def error(self, message: str):
        print(f"raygan: error in {self.command}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
