"""The study driver: a plan run (or resumed) as a `tune.Tuner`, its trials recorded as they end.

Grid studies pass their expanded trial list as one `tune.grid_search` axis of trial keys; searches
use a seeded `OptunaSearch` with an ASHA scheduler on validation AUROC, or racing over instances
(raygan.tune.search). The
study directory's layout is raygan.store's; the trainable is raygan.tune.trainable, the recorder
raygan.tune.recorder, and what --resume checks and finds raygan.tune.resume.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from raygan.core.errors import ConfigError, RayganError, first_line
from raygan.core.paths import DISK_FULL, check_output_dir, free_space
from raygan.raytrain.startup import check_resources, start_ray
from raygan.store.layout import TUNE_DIR
from raygan.store.provenance import log_driver
from raygan.store.records import records_with_hash, scan_records
from raygan.tune.context import DriverContext, TrialSetup, driving
from raygan.tune.plan import Plan, RunOptions, study_dir_for
from raygan.tune.resume import (
    check_resumed_concurrency,
    check_study_dir,
    continue_search_without_tune_state,
    prepare_study_dir,
    reconcile,
    restorable,
    resume_summary,
)
from raygan.tune.search import optuna_storage_for, tuner_arguments


class StudyInterrupted(KeyboardInterrupt):
    """The driver was interrupted (Ctrl-C, SIGINT) and Tune ended the running trials early; they
    are not recorded, and --resume continues them from their checkpoints."""


def run_plan(plan: Plan, options: RunOptions) -> Path:
    """Run (or resume) every trial of the plan; return the study directory. Trial records are in
    ``rows/`` when this returns; the analysis layer turns them into Parquet. A full disk stops the
    study with one RayganError naming the path, its free space and --resume."""
    try:
        return _run_plan(plan, options)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise disk_full_error(Path(exc.filename or options.storage)) from None


def disk_full_error(path: Path) -> RayganError:
    return RayganError(f"{path}: no space left on the device ({free_space(path)}): the study stopped; the "
                       f"records written so far are intact. Free some space, then run the same command plus "
                       f"--resume")


def _run_plan(plan: Plan, options: RunOptions) -> Path:
    options.check()
    # before Ray starts or anything is written: a file or a read-only place is one line, not a
    # failure after a local Ray came up
    check_output_dir(options.storage, "--storage", "a directory of studies")
    check_output_dir(study_dir_for(options.storage, plan.study), "--storage", "a directory of studies")
    if plan.instances and options.workers_per_trial:
        raise ConfigError(f"search {plan.study.name} runs each configuration on {len(plan.instances)} instances "
                          f"in-process; --workers-per-trial (DDP) is for one-instance searches and grids")
    study_dir = check_study_dir(plan, options)
    check_resumed_concurrency(plan, options, study_dir)
    plan = reconcile(plan, options)
    optuna = None
    if plan.study.is_search and options.optuna_storage:
        # a server named by the user is checked before Ray starts or a study directory is written
        optuna = optuna_storage_for(plan, options, study_dir)
    # Tune's own TensorBoard logger would put a second HParams entry beside each trial's writer;
    # keep Tune's CSV/JSON logs, and let raygan's writer own TensorBoard (trials/<key>/tensorboard).
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    start_ray(options.address)
    study_dir = prepare_study_dir(plan, options)  # after joining Ray: a bad --address leaves no study behind
    if plan.study.is_search and optuna is None:  # the default SQLite file needs the study directory
        optuna = optuna_storage_for(plan, options, study_dir)
    log_driver(study_dir, "start", resume=options.resume)  # wall time and machine, for the committed results

    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from raygan.tune.recorder import Recorder, sweep
    from raygan.tune.trainable import run_trial

    _check_trial_resources(options)
    plan_info = {"study": plan.study.name, "study_hash": plan.study_hash, "profile": plan.profile,
                 "trials": len(plan.trials) if plan.trials else plan.samples, "epochs": plan.epochs,
                 "instances": len(plan.instances)}
    setup = TrialSetup(
        kind="search" if plan.study.is_search else "grid",
        study_dir=str(study_dir),
        trials={t.key: t.as_dict() for t in plan.trials},
        base=plan.base.as_dict() if plan.base else None,
        workers_per_trial=options.workers_per_trial,
        cpus_per_trial=options.cpus_per_trial,
        gpus_per_trial=options.gpus_per_trial,
        cpus_per_worker=options.cpus_per_worker,
        keep_data=options.keep_data,
        instances=tuple(t.as_dict() for t in plan.instances),
    )
    context = DriverContext(study_dir=study_dir, study_hash=plan.study_hash, plan_info=plan_info, setup=setup,
                            keep_checkpoints=options.keep_checkpoints)
    if options.workers_per_trial:
        # The trial only drives its trainer; its workers hold the CPUs (Ray's default accounting
        # of 1 CPU per trial plus 1 per worker deadlocks on 2 CPUs).
        resources = {"cpu": 0.1}
    else:
        resources = {"cpu": options.cpus_per_trial, **({"gpu": options.gpus_per_trial} if options.gpus_per_trial else {})}
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), resources)
    run_config = tune.RunConfig(
        name=TUNE_DIR,
        storage_path=str(study_dir),
        callbacks=[CSVLoggerCallback(), JsonLoggerCallback(), Recorder()],
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        verbose=0,  # one line per ended trial instead (Recorder)
    )
    print(resume_summary(study_dir, plan) if options.resume else
          f"study {plan.study.name}, profile {plan.profile}: {plan_info['trials']} trials into {study_dir}",
          file=sys.stderr, flush=True)
    with driving(context), quiet_missing_trial_results(context):
        samples = plan.samples
        if options.resume and restorable(study_dir):
            tuner = _restore(study_dir, plan, trainable)
        else:
            if plan.study.is_search and options.resume:  # a copy of an export: no Tune experiment
                samples = continue_search_without_tune_state(plan, study_dir, optuna)
            tuner = None if plan.study.is_search and not samples else tune.Tuner(
                trainable, **tuner_arguments(replace(plan, samples=samples), options, optuna), run_config=run_config)
        try:
            results = tuner.fit() if tuner is not None else None
        except Exception as exc:
            # Tune's own state could not be written, or, after a full disk stopped the study, could
            # not be read back (an empty error file)
            if not (context.events.get("disk_full") or (isinstance(exc, OSError) and exc.errno in DISK_FULL)):
                raise
            context.events["disk_full"] = context.events.get("disk_full") or getattr(exc, "filename", None) or str(study_dir)
            results = None
        if context.events.get("disk_full"):
            raise disk_full_error(Path(context.events["disk_full"]))
        if results is not None:
            sweep(context, results)
    log_driver(study_dir, "end")
    # Tune returns normally after Ctrl-C; then the study did not end (a grid: trials without a
    # record; a search: fewer records than samples, every ended trial being recorded, failed too)
    if setup.kind == "grid":
        recorded = {r["trial_key"] for r in scan_records(study_dir)[0]}
        unended = [t.key for t in plan.trials if t.key not in recorded]
        if unended:
            raise StudyInterrupted(f"{len(unended)} of {len(plan.trials)} trials not ended")
    elif (ended := len(records_with_hash(study_dir, plan.study_hash))) < plan.samples:
        raise StudyInterrupted(f"{plan.samples - ended} of {plan.samples} samples not ended")
    return study_dir


def _restore(study_dir: Path, plan: Plan, trainable):
    """The interrupted Tune experiment. Tune pickled raygan's trainable, recorder, searcher and
    scheduler by module path: one written by a raygan whose modules had other paths cannot be
    unpickled, and is continued from an export instead (the records and checkpoints stay valid)."""
    from ray import tune

    try:
        return tune.Tuner.restore(str(study_dir / TUNE_DIR), trainable=trainable, resume_errored=True)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise RayganError(
            f"--resume: the Tune experiment in {study_dir / TUNE_DIR} was written by another version of raygan "
            f"({first_line(exc)}); continue from an export: `raygan study export {study_dir} --out COPY`, copy COPY "
            f"to <new storage>/{plan.study.name} and --resume there"
        ) from None


def _check_trial_resources(options: RunOptions) -> None:
    """Refuse trials the Ray cluster could never place."""
    if options.workers_per_trial:
        check_resources(f"--workers-per-trial {options.workers_per_trial} x --cpus-per-worker "
                        f"{options.cpus_per_worker:g} (+0.1 for the trial)",
                        cpus=0.1 + options.workers_per_trial * options.cpus_per_worker, remedy="Lower --cpus-per-worker.")
    else:
        check_resources(f"--cpus-per-trial {options.cpus_per_trial:g}", cpus=options.cpus_per_trial)
        check_resources(f"--gpus-per-trial {options.gpus_per_trial:g}", gpus=options.gpus_per_trial)


class _MissingTrialResults(logging.Filter):
    """Tune's "Failed to fetch metrics for N trial(s) ... result.json and progress.csv were not
    found": Tune's ExperimentAnalysis reads every trial's result files when a Tuner is restored or
    finishes, and a trial that had not reported an epoch yet (interrupted, waiting, or a
    configuration error before its first epoch) has none. raygan's results come from rows/, never
    from those files, so the warning only alarms. Also Tune's advice when interrupted, and its
    tracebacks of a full disk: the driver says each once, with the resume command."""

    def __init__(self, context: DriverContext | None) -> None:
        super().__init__()
        self.context = context

    def filter(self, record) -> bool:
        message = record.getMessage()
        if message.startswith(TUNE_NOISE):
            return False
        text = message + (str(record.exc_info[1]) if record.exc_info else "") + (record.exc_text or "")
        if "No space left on device" in text:
            return False
        disk_full = self.context is not None and self.context.events.get("disk_full")
        return not (disk_full and message.startswith(TUNE_DISK_NOISE))


TUNE_DISK_NOISE = ("Saving experiment state to storage", "Trial task failed for trial", "Trials did not complete")


# Tune's lines when interrupted: its own advice (Tuner.restore, press Ctrl-C again) contradicts
# raygan's one line ("continue with the same command plus --resume").
TUNE_NOISE = ("Failed to fetch metrics for", "Stop signal received", "Experiment has been interrupted")


@contextlib.contextmanager
def quiet_missing_trial_results(context: DriverContext | None = None):
    loggers = [logging.getLogger(name) for name in ("ray.tune.analysis.experiment_analysis", "ray.tune.tune")]
    # A logger's filter does not see what its children log; the handlers that print it do. With
    # ray.init(configure_logging=False) Ray's loggers have none: Python's last resort prints.
    handlers = [h for name in ("ray", "ray.tune", "") for h in logging.getLogger(name).handlers]
    handlers += [logging.lastResort] if logging.lastResort is not None else []
    only = _MissingTrialResults(context)
    for target in (*loggers, *handlers):
        target.addFilter(only)
    try:
        yield
    finally:
        for target in (*loggers, *handlers):
            target.removeFilter(only)
