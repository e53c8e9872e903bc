"""Ray Tune layer: a study's trials run as a `tune.Tuner`.

Grid studies pass their expanded trial list as one `tune.grid_search` axis of trial keys (the
expansion in `raygan.study` is the single source of order and content); searches use a seeded
`OptunaSearch` with an ASHA scheduler on validation AUROC. A trial trains in-process inside its
Tune trial by default (cheap: actors are reused), or launches the Ray Train DDP trainer with
``workers_per_trial``; the same epoch loop runs either way.

Layout of a study directory (``<storage>/<study>``)::

    study.json          what was run (study, profile, hash, options)
    tune/               the Tune experiment (restored by --resume)
    trials/<key>/       each trial's run: checkpoints, TensorBoard, metrics.json, config.json
    rows/<key>.json     one record per finished, stopped or failed trial (written as it ends)

A trial's own directory is keyed by the trial (never by time), so a restored or retried trial
resumes from its last checkpoint instead of starting over, and a finished one is not trained again.
On several nodes this holds only if ``<storage>`` is one shared file system mounted at the same path
on every node (NFS, EFS): a trial retried on another node must find its checkpoint there. A trial
on a node that cannot see the study directory fails with a message saying so.

Retries (``max_failures``): a trial that dies (its node lost, out of memory, a crash) is retried
from its last checkpoint. A deterministic error (an impossible configuration, a diverged loss) would
only fail again from the same checkpoint and seed, so the trial ends at once, recorded as failed
with its message, and is not retried. Each attempt is logged in ``trials/<key>/attempts.jsonl``
(node, host, the epoch it started from).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from raygan.core.atomic import write_text
from raygan.core.config import RunConfig
from raygan.core.errors import ConfigError, RayganError, first_line
from raygan.study import SEARCH_METRIC, Study, Trial, apply_sampled

STUDY_FILE = "study.json"
TUNE_DIR = "tune"
TRIALS_DIR = "trials"
ROWS_DIR = "rows"
ERROR_FILE = "error.txt"
ATTEMPTS_FILE = "attempts.jsonl"
# What a finished trial keeps of its checkpoints: last.pt (and a DDP trainer's own copy) only
# serves to resume a trial, and a finished one is never trained again; selected.pt is the detector
# (`raygan score`, `raygan study best`, the reconstruction figures).
KEEP_CHECKPOINTS = ("selected", "all", "none")
# Environment passed to trial processes on a cluster that the driver did not start.
FORWARDED_ENV = ("RAYGAN_DATA", "RAYGAN_CACHE")


@dataclass(frozen=True)
class RunOptions:
    """How to run a study (not what: that is the study, profile and flags)."""

    storage: Path
    resume: bool = False
    address: str | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 0  # 0: train in-process; N >= 1: a Ray Train DDP trainer with N workers
    cpus_per_worker: float = 0.9
    max_failures: int = 0
    search_seed: int = 0
    grace_epochs: int = 1  # ASHA: epochs before a search trial may be stopped
    optuna_storage: str | None = None  # searches: an Optuna storage URL; None: <study dir>/optuna.db
    keep_checkpoints: str = "selected"  # of a finished trial: selected | all | none (KEEP_CHECKPOINTS)

    def check(self) -> None:
        if self.cpus_per_trial <= 0:
            raise ConfigError(f"--cpus-per-trial must be > 0; got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ConfigError(f"--gpus-per-trial must be >= 0; got {self.gpus_per_trial}")
        if self.workers_per_trial < 0:
            raise ConfigError(f"--workers-per-trial must be >= 0; got {self.workers_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be >= 1; got {self.max_concurrent}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"--cpus-per-worker must be > 0; got {self.cpus_per_worker}")
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ConfigError(f"--keep-checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}; "
                              f"got {self.keep_checkpoints!r}")


@dataclass(frozen=True)
class Plan:
    """A study expanded for one profile: the grid's trials, or a search's base trial and budget."""

    study: Study
    profile: str
    study_hash: str
    trials: tuple[Trial, ...] = ()  # grid
    base: Trial | None = None  # search
    samples: int | None = None
    epochs: int = 0

    def manifest(self, options: RunOptions) -> dict:
        return {
            "study": self.study.name,
            "reproduces": self.study.reproduces,
            "profile": self.profile,
            "study_hash": self.study_hash,
            "kind": "search" if self.study.is_search else "grid",
            "trials": len(self.trials) if not self.study.is_search else self.samples,
            "rows": ["dataset", *self.study.rows],
            "trial_list": [t.as_dict() for t in self.trials] if self.trials else None,
            "base": self.base.as_dict() if self.base else None,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        }


def study_dir_for(storage: Path, study: Study) -> Path:
    return (storage.expanduser() / study.name).resolve()


# --------------------------------------------------------------------------------------------
# The trainable (runs inside a Tune trial process)


def _summary(metrics: dict) -> dict:
    """What every report carries besides the epoch record: the run so far, validation-selected."""
    keys = ("auroc", "ap", "auroc_val", "auroc_last", "selected_epoch", "epochs", "images_per_s",
            "train_seconds", "params_generator", "discriminator_resets")
    return {f"run_{k}": metrics[k] for k in keys if k in metrics}


def _numbers(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool)) and not isinstance(v, dict)}


def run_trial(tune_config: dict, setup: dict) -> None:
    """Train one trial and report each epoch to Tune. ``setup`` carries what every trial shares."""
    import ray
    from ray import tune

    context = tune.get_context()
    if setup["kind"] == "grid":
        spec = setup["trials"][tune_config["trial"]]
        key, factors, config = spec["key"], spec["factors"], spec["config"]
    else:
        key = f"trial-{context.get_trial_id()}"
        sampled = {k: v for k, v in tune_config.items()}
        factors = {**setup["base"]["factors"], **sampled}
        config = apply_sampled(setup["base"]["config"], sampled)
    study_dir = Path(setup["study_dir"])
    if not (study_dir / STUDY_FILE).exists():
        # The driver wrote study.json before any trial started: this node has another file system.
        # Raised (not returned): a retry may land on a node that does see the storage.
        raise RayganError(
            f"--storage {study_dir.parent} is not visible on node {socket.gethostname()} "
            f"({ray.util.get_node_ip_address()}): with several nodes, --storage must be a shared file "
            f"system (NFS, EFS) mounted at the same path on every node"
        )
    out_dir = study_dir / TRIALS_DIR / key
    done = _read_json(study_dir / ROWS_DIR / f"{key}.json")
    if done is None or done.get("status") != "finished":
        # No readable record, yet every epoch trained and last.pt deleted by --keep-checkpoints:
        # it finished (its record was damaged); training it again would start from scratch.
        metrics = _read_json(out_dir / "metrics.json")
        from raygan.engine.checkpoints import LAST

        if (metrics and metrics.get("history") and not (out_dir / "checkpoints" / LAST).exists()
                and metrics.get("epochs") == RunConfig.from_dict(config).train.epochs):
            done = {"status": "finished", "history": metrics["history"], "metrics": metrics}
    if done is not None and done["status"] == "finished" and done["history"]:
        # Recorded as finished before the driver died (Tune's state may predate that): report
        # its end state once, train nothing.
        tune.report({**_numbers(done["history"][-1]), **_summary(done["metrics"]),
                     "epochs_done": done["history"][-1]["epoch"] + 1, "trial_key": key,
                     "node_id": done.get("node_id"), "hostname": done.get("hostname")})
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ERROR_FILE).unlink(missing_ok=True)
    identity = {
        "trial_key": key,
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
    }
    _log_attempt(out_dir, identity)
    reported = []
    try:
        cfg = RunConfig.from_dict(config)
        if setup["workers_per_trial"]:
            _run_ddp(cfg, out_dir, setup, factors, identity)
            return

        import torch

        from raygan.engine.loop import train

        torch.set_num_threads(max(1, int(setup["cpus_per_trial"])))
        from raygan.engine.devices import resolve_device

        # Ray set CUDA_VISIBLE_DEVICES to this trial's share: "cuda" is that GPU, and a GPU request
        # where none is visible fails the trial with one line instead of training on the CPU.
        device = resolve_device("cuda") if setup["gpus_per_trial"] else torch.device("cpu")

        def on_epoch_end(record: dict, checkpoint) -> None:
            metrics = json.loads((out_dir / "metrics.json").read_text())
            reported.append(record["epoch"])
            tune.report({**_numbers(record), **_summary(metrics), "epochs_done": record["epoch"] + 1, **identity})

        result = train(cfg, out_dir=out_dir, on_epoch_end=on_epoch_end, device=device, hparams=_flat(factors))
        if not reported:  # restored after it had finished: report the end state once
            last = result["history"][-1]
            tune.report({**_numbers(last), **_summary(result), "epochs_done": last["epoch"] + 1, **identity})
    except Exception as exc:
        message = str(exc) if isinstance(exc, RayganError) else f"{type(exc).__name__}: {exc}"
        write_text(out_dir / ERROR_FILE, message + "\n\n" + traceback.format_exc())
        if _is_deterministic(exc):
            # Ending normally keeps Tune from retrying it (FailureConfig retries every raised
            # error); the recorder reads error.txt and records the trial as failed.
            return
        raise


def _is_deterministic(exc: Exception) -> bool:
    """An error that a retry from the same checkpoint and seed would raise again. DataError is
    not one: a data set missing on one node may be present on another."""
    from raygan.engine.loop import NonFiniteLoss

    return isinstance(exc, (ConfigError, NonFiniteLoss))


def _log_attempt(out_dir: Path, identity: dict) -> None:
    """Append this attempt (node, host, the epoch its checkpoint resumes from) to attempts.jsonl."""
    from raygan.engine.checkpoints import LAST, load_checkpoint

    last = out_dir / "checkpoints" / LAST
    try:
        start_epoch = load_checkpoint(last)["epoch"] if last.exists() else 0
    except RayganError:
        start_epoch = 0  # damaged: the loop reports it with its own message
    entry = {"node_id": identity["node_id"], "hostname": identity["hostname"], "start_epoch": start_epoch,
             "started_at": time.time()}
    with open(out_dir / ATTEMPTS_FILE, "a") as f:
        f.write(json.dumps(entry) + "\n")


def read_attempts(run_dir: Path) -> list[dict]:
    path = run_dir / ATTEMPTS_FILE
    if not path.exists():
        return []
    attempts = []
    for line in path.read_text().splitlines():
        try:
            attempts.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short when its process died mid-append; the others stand
    return attempts


def _run_ddp(cfg: RunConfig, out_dir: Path, setup: dict, factors: dict, identity: dict) -> None:
    """The trial drives a Ray Train DDP trainer; rank 0's per-epoch reports reach Tune through
    TuneReportCallback. The trainer's run is named after the config and stored in the trial's
    directory, so a restored trial resumes from the trainer's last checkpoint."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from raygan.raytrain.ddp import train_with_ray

    train_with_ray(
        cfg,
        out_dir,
        workers=setup["workers_per_trial"],
        gpus_per_worker=setup["gpus_per_trial"],
        cpus_per_worker=setup["cpus_per_worker"],
        threads=max(1, int(setup["cpus_per_worker"])),
        callbacks=[TuneReportCallback()],
        hparams=_flat(factors),
        extra_metrics={"trial_key": identity["trial_key"], "hostname": identity["hostname"]},
    )


def _flat(factors: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in factors.items()}


# --------------------------------------------------------------------------------------------
# Records (driver side): one JSON file per ended trial, written as it ends


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def trial_record(study_dir: Path, plan_info: dict, key: str, trial_id: str, status: str, error: str | None,
                 factors: dict, config: dict, last_result: dict | None) -> dict:
    run_dir = study_dir / TRIALS_DIR / key
    metrics = _read_json(run_dir / "metrics.json") or {}
    resolved = _read_json(run_dir / "config.json") or config
    if status == "terminated" and (run_dir / ERROR_FILE).exists():
        status, error = "failed", _error_message(run_dir, None)  # a deterministic error, not retried
    elif status == "terminated":
        epochs = RunConfig.from_dict(resolved).train.epochs
        status = "finished" if metrics.get("epochs") == epochs else "stopped"
    if status == "failed" and error is None:
        error = "the trial process died without a message (see the Tune trial's error.txt)"
    last = last_result or {}
    return {
        "study": plan_info["study"],
        "study_hash": plan_info["study_hash"],
        "profile": plan_info["profile"],
        "trial_key": key,
        "trial_id": trial_id,
        "status": status,
        "error": error,
        "factors": factors,
        "config": resolved,
        "metrics": {k: v for k, v in metrics.items() if k not in ("history", "counts")},
        "counts": metrics.get("counts"),
        "history": metrics.get("history", []),
        "node_id": last.get("node_id"),
        "hostname": last.get("hostname"),
        "attempts": read_attempts(run_dir),
        "recorded_at": time.time(),
    }


def interrupted(record: dict, setup: dict) -> bool:
    """A grid trial that ended short: no scheduler stops grid trials, so its driver was interrupted
    (Ctrl-C makes Tune end running trials gracefully). It is not recorded; --resume continues it."""
    return record["status"] == "stopped" and setup["kind"] == "grid"


def _error_message(run_dir: Path, trial) -> str | None:
    path = run_dir / ERROR_FILE
    if path.exists():
        return path.read_text().split("\n\n", 1)[0].strip()
    error = trial.get_error() if trial is not None else None
    if error is None:
        return None
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def write_record(study_dir: Path, record: dict) -> None:
    write_text(study_dir / ROWS_DIR / f"{record['trial_key']}.json", json.dumps(record, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


# What every record has (trial_record writes them all); a file without them is damaged.
RECORD_KEYS = ("study", "study_hash", "trial_key", "status", "factors", "config")


def load_records(study_dir: Path) -> tuple[list[dict], list[str]]:
    """The study's readable trial records, and one line per damaged record file naming it."""
    rows = study_dir / ROWS_DIR
    records, damaged = [], []
    for path in sorted(rows.glob("*.json")) if rows.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            damaged.append(f"{path} is damaged ({_reason(exc)})")
            continue
        missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else list(RECORD_KEYS)
        if missing:
            damaged.append(f"{path} is damaged (not a trial record: no {', '.join(missing)})")
        else:
            records.append(record)
    return records, damaged


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return getattr(exc, "strerror", None) or str(exc)


def read_records(study_dir: Path, skip_damaged: bool = False) -> list[dict]:
    """The study's trial records. A damaged record file is an error naming it, or with
    ``skip_damaged`` is left out with one line on standard error."""
    records, damaged = load_records(study_dir)
    if damaged and not skip_damaged:
        raise RayganError(
            f"{damaged[0]}{f' (and {len(damaged) - 1} more)' if len(damaged) > 1 else ''}. Pass --skip-damaged to "
            f"leave it out, or run the study again with --resume, which records a trial that ended again from "
            f"its {TRIALS_DIR}/<key>/metrics.json"
        )
    for line in damaged:
        print(f"raygan: skipped {line}", file=sys.stderr)
    return records


def prune_checkpoints(run_dir: Path, keep: str) -> int:
    """Delete what a finished trial's ``keep`` policy drops; return the bytes freed. Only call it once
    the trial's record says finished: resuming an unfinished trial needs its last.pt."""
    import shutil

    from raygan.engine.checkpoints import LAST, SELECTED
    from raygan.raytrain.ddp import RAY_DIR

    if keep == "all":
        return 0
    doomed = [run_dir / "checkpoints" / LAST, *(run_dir / RAY_DIR).glob("*/checkpoint_*")]
    if keep == "none":
        doomed.append(run_dir / "checkpoints" / SELECTED)
    freed = 0
    for path in doomed:
        try:
            if path.is_dir():
                freed += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                shutil.rmtree(path)
            elif path.exists():
                freed += path.stat().st_size
                path.unlink()
        except OSError as exc:  # disk use, not correctness: say so and go on
            print(f"raygan: could not delete {path}: {exc.strerror or exc}", file=sys.stderr)
    return freed


def _key_of(trial, kind: str) -> str:
    if kind == "grid":
        return trial.config["trial"]
    return f"trial-{trial.trial_id}"


def _factors_of(trial, setup: dict) -> tuple[dict, dict]:
    if setup["kind"] == "grid":
        spec = setup["trials"][trial.config["trial"]]
        return spec["factors"], spec["config"]
    sampled = dict(trial.config)
    return {**setup["base"]["factors"], **sampled}, apply_sampled(setup["base"]["config"], sampled)


# Settings of the driver running now. Tuner.restore brings back the Recorder pickled when the
# study started (Tune has no way to pass new callbacks), so what may differ between the first run
# and --resume is read from here, live, not from the pickled object.
_DRIVER: dict = {"keep_checkpoints": "selected"}


class _RecorderState:
    """The Recorder's work and state (module level, so an unpickled Recorder uses today's code)."""

    def __init__(self, study_dir: Path, plan_info: dict, setup: dict) -> None:
        from raygan.tune.progress import StatusLine

        self.study_dir, self.plan_info, self.setup = study_dir, plan_info, setup
        records = load_records(study_dir)[0]
        # Counted from what is recorded (a damaged record too: its trial ended), so a resumed study
        # counts on from its finished trials.
        self.ended = {p.stem for p in (study_dir / ROWS_DIR).glob("*.json")}
        self.failed = {r["trial_key"] for r in records if r["status"] == "failed"}
        self.status = StatusLine(plan_info.get("trials"))

    def write(self, trial, status: str) -> None:
        study_dir, setup, plan_info = self.study_dir, self.setup, self.plan_info
        key = _key_of(trial, setup["kind"])
        existing = _read_json(study_dir / ROWS_DIR / f"{key}.json")
        if existing is not None and existing["status"] == "finished":
            return  # a restored driver saw it end again; the first record stands
        factors, config = _factors_of(trial, setup)
        error = _error_message(study_dir / TRIALS_DIR / key, trial) if status == "failed" else None
        record = trial_record(study_dir, plan_info, key, trial.trial_id, status, error, factors, config,
                              trial.last_result)
        if interrupted(record, setup):
            done = record["metrics"].get("epochs", (trial.last_result or {}).get("epochs_done", 0))
            self.status.print(f"{key} interrupted after {done} epoch(s): not recorded; --resume continues it")
            return
        write_record(study_dir, record)
        if record["status"] == "finished":
            prune_checkpoints(study_dir / TRIALS_DIR / key, _DRIVER["keep_checkpoints"])
        if existing is None and key in self.ended:  # counted already: its record file was damaged
            self.status.print(f"{key} {record['status']}: recorded again (its record was damaged)")
            return
        self.ended.add(key)
        (self.failed.add if record["status"] == "failed" else self.failed.discard)(key)
        self.status.ended_here += 1
        metrics = record["metrics"]
        detail = (f"error: {record['error']}" if record["status"] == "failed" else
                  f"test AUROC {metrics.get('auroc', float('nan')):.4f} (validation {metrics.get('auroc_val', float('nan')):.4f}, "
                  f"epoch {metrics.get('selected_epoch')} of {metrics.get('epochs')})")
        total = f"/{plan_info['trials']}" if plan_info.get("trials") else ""
        self.status.print(f"[{len(self.ended)}{total}] {key} {record['status']}: {detail}")

    def step(self, iteration: int, trials) -> None:
        running = []
        for trial in trials:
            if trial.status != "RUNNING" or _key_of(trial, self.setup["kind"]) in self.ended:
                continue
            epochs = _factors_of(trial, self.setup)[1].get("train", {}).get("epochs") or self.plan_info.get("epochs")
            running.append(((trial.last_result or {}).get("epochs_done", 0), epochs or 0))
        finished = len(self.ended) - len(self.failed)
        self.status.update(self.status.text(finished, len(self.failed), running), force=iteration <= 1)

    def recover(self, trial) -> None:
        key = _key_of(trial, self.setup["kind"])
        error = _error_message(self.study_dir / TRIALS_DIR / key, trial) or "its process or node died"
        last = trial.last_result or {}
        where = f"{last['hostname']} (node {str(last.get('node_id'))[:8]})" if last.get("hostname") else "its node"
        self.status.print(f"{key} failed on {where}: {error}; retry {trial.run_metadata.num_failures} of "
                          f"{trial.max_failures}, from its last checkpoint")


def _recorder(study_dir: Path, plan_info: dict, setup: dict):
    from ray.tune import Callback

    class Recorder(Callback):
        """Writes a trial's record the moment it ends, so a killed driver loses nothing, prints one
        line about it, and keeps the study's status line (raygan.tune.progress) up to date."""

        state: _RecorderState | None = None

        def __getstate__(self):
            return {}  # pickled into tuner.pkl at the start; the state is rebuilt by setup()

        def setup(self, **info):
            self.state = _RecorderState(study_dir, plan_info, setup)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.state.write(trial, "terminated")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.state.write(trial, "failed")

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.state.recover(trial)

        def on_step_end(self, iteration, trials, **info):
            self.state.step(iteration, trials)

        def on_experiment_end(self, trials, **info):
            self.state.status.close()

    return Recorder()


# --------------------------------------------------------------------------------------------
# Driver


def check_study_dir(plan: Plan, options: RunOptions) -> Path:
    """Refuse to mix different studies or profiles in one directory, or to resume nothing."""
    study_dir = study_dir_for(options.storage, plan.study)
    manifest_path = study_dir / STUDY_FILE
    if manifest_path.exists():
        saved, damage = read_manifest(manifest_path)
        if damage is not None:
            if not options.resume:
                raise RayganError(f"{damage}; run the same command with --resume to write it again")
            other = {r["study_hash"] for r in load_records(study_dir)[0]} - {plan.study_hash}
            if other:
                raise RayganError(
                    f"--resume: {damage}, and the trial records under {study_dir / ROWS_DIR} belong to other trials "
                    f"(hash {', '.join(sorted(other))}, now {plan.study_hash}); use the same profile and flags as the "
                    f"interrupted run"
                )
            return study_dir  # prepare_study_dir writes it again
        if not options.resume:
            raise RayganError(
                f"{study_dir} already holds a run of study {saved.get('study')} (profile {saved.get('profile')}); "
                f"pass --resume to continue it, or --storage DIR for a fresh one"
            )
        if (saved.get("study_hash") != plan.study_hash and not same_trials(saved, plan)
                and not grows(saved, plan)):
            raise RayganError(
                f"--resume: {study_dir} holds study {saved.get('study')} profile {saved.get('profile')} with other "
                f"trials (hash {saved.get('study_hash')}, now {plan.study_hash}); use the same profile and flags "
                f"as the interrupted run, or --storage DIR for a new study"
            )
    elif options.resume:
        raise RayganError(f"--resume: nothing to resume at {study_dir}; run without --resume to start the study")
    return study_dir


def same_trials(saved: dict, plan: Plan) -> bool:
    """Whether a saved grid study's trials are the plan's, written before config fields were added:
    the same keys, factors and values, except new fields that hold their default (and so train
    exactly as before). A changed value or a removed field is a different study."""
    saved_list = saved.get("trial_list")
    if plan.study.is_search or not saved_list or len(saved_list) != len(plan.trials):
        return False
    return all(old["key"] == new.key and _trains_as(old, new) for old, new in zip(saved_list, plan.trials))


def grows(saved: dict, plan: Plan) -> bool:
    """Whether the plan is a saved grid study grown: every saved trial is in it and would train as
    before (more seeds, classes or levels), and it has more. Its records are kept, not trained again."""
    saved_list = saved.get("trial_list")
    planned = {t.key: t for t in plan.trials}
    if plan.study.is_search or not saved_list or len(saved_list) >= len(planned):
        return False
    return all(old["key"] in planned and _trains_as(old, planned[old["key"]]) for old in saved_list)


def _trains_as(old: dict, new: Trial) -> bool:
    """A saved trial (its dict in study.json) and a planned one are the same run: the same factors and
    config values, fields added since holding their default."""
    from raygan.analysis.parquet import _flatten  # results imports this module: imported here

    if old["factors"] != new.factors:
        return False
    defaults = _flatten(RunConfig.from_dict({}).to_dict(), "")
    before, now = _flatten(old["config"], ""), _flatten(new.config, "")
    if set(before) - set(now):
        return False
    return all(now[k] == (before[k] if k in before else defaults.get(k, object())) for k in now)


def study_hashes(manifest: dict) -> set[str]:
    """The hashes a study directory's records may carry: its own, and those of the smaller grids it
    grew from (their records are this study's trials)."""
    return {manifest.get("study_hash"), *manifest.get("earlier_hashes", ())} - {None}


def tune_concurrency(plan: Plan, max_concurrent: int | None) -> int | None:
    """The max_concurrent_trials Tune gets: searches default to 1, so that a seeded TPE search is
    reproducible (with more, its suggestions depend on completion order); grids to no limit."""
    return (max_concurrent or 1) if plan.study.is_search else max_concurrent


def restorable(study_dir: Path) -> bool:
    """Whether the study directory holds a Tune experiment that Tuner.restore can continue."""
    from ray import tune

    return tune.Tuner.can_restore(str(study_dir / TUNE_DIR))


def study_records(study_dir: Path, study_hash: str) -> list[dict]:
    """The readable records of this study (hash) in the directory."""
    return [r for r in load_records(study_dir)[0] if r.get("study_hash") == study_hash]


def check_resumed_concurrency(plan: Plan, options: RunOptions, study_dir: Path) -> None:
    """Tune restores an experiment with the concurrency it started with (pickled in its search
    state), so a --max-concurrent given on --resume would be ignored silently: refuse it instead."""
    if not (options.resume and options.max_concurrent is not None):
        return
    manifest = _read_json(study_dir / STUDY_FILE) or {}
    before = manifest.get("options", {}).get("max_concurrent")
    if tune_concurrency(plan, before) == options.max_concurrent or not restorable(study_dir) or grows(manifest, plan):
        return  # the same, or no Tune experiment to restore (a copy of an export, a grown grid): the new value applies
    started = f"--max-concurrent {before}" if before is not None else (
        "1 trial at a time (a search's default)" if plan.study.is_search else "no --max-concurrent (no limit)")
    how = (" (the search's TPE state lives in that experiment, so a search keeps its concurrency)"
           if plan.study.is_search else
           f"; to change it, continue from an export: `raygan study export {study_dir} --out COPY`, copy COPY to "
           f"<new storage>/{plan.study.name} and --resume there")
    raise RayganError(f"--resume --max-concurrent {options.max_concurrent}: {study_dir} started with {started}, and "
                      f"Tune restores that with its experiment; resume without --max-concurrent{how}")


def reconcile(plan: Plan, options: RunOptions) -> Plan:
    """On --resume of a study whose trials are the same but were written before new config fields
    existed, the plan keeps the saved hash, so every record of the study carries one hash. A grown
    study takes the plan's hash (prepare_study_dir keeps the earlier one in study.json)."""
    saved = _read_json(study_dir_for(options.storage, plan.study) / STUDY_FILE) or {}
    if (options.resume and saved.get("study_hash") and saved["study_hash"] != plan.study_hash
            and not grows(saved, plan)):
        return replace(plan, study_hash=saved["study_hash"])
    return plan


def prepare_study_dir(plan: Plan, options: RunOptions) -> Path:
    """Check, then create the study directory and its manifest. A grown grid gets the new manifest,
    naming the hashes it grew from, and its Tune experiment (of the smaller grid, which a restore
    would run as it was) is set aside as tune-<earlier hash>/: a fresh one runs every trial, those
    recorded as finished reporting once without training."""
    study_dir = check_study_dir(plan, options)
    manifest_path = study_dir / STUDY_FILE
    study_dir.mkdir(parents=True, exist_ok=True)
    damaged = manifest_path.exists() and read_manifest(manifest_path)[1] is not None
    saved = {} if damaged or not manifest_path.exists() else read_manifest(manifest_path)[0]
    if saved and options.resume and saved.get("study_hash") != plan.study_hash and grows(saved, plan):
        manifest = {**plan.manifest(options), "earlier_hashes": sorted(study_hashes(saved))}
        tune_dir, aside = study_dir / TUNE_DIR, study_dir / f"{TUNE_DIR}-{saved['study_hash']}"
        if tune_dir.exists():
            tune_dir.rename(aside)
        write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
        print(f"raygan: study {plan.study.name} grows from {len(saved['trial_list'])} to {len(plan.trials)} trials "
              f"(profile {plan.profile}): the {len(saved['trial_list'])} it had are kept as recorded, the others run"
              + (f"; its Tune experiment is kept in {aside}" if aside.exists() else ""), file=sys.stderr, flush=True)
    elif not manifest_path.exists() or damaged:
        write_text(manifest_path, json.dumps(plan.manifest(options), indent=1) + "\n")
        if damaged:
            print(f"raygan: {manifest_path} was damaged; written again from this command's study", file=sys.stderr)
    return study_dir


def read_manifest(path: Path) -> tuple[dict, str | None]:
    """study.json, or ({}, a line naming the file and what is wrong with it)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"{path} is damaged ({_reason(exc)})"
    if not isinstance(manifest, dict) or "study" not in manifest or "study_hash" not in manifest:
        return {}, f"{path} is damaged (not a study description: no study or study_hash)"
    return manifest, None


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    _check_reachable(address)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    local = address in (None, "local") and not os.environ.get("RAY_ADDRESS")
    if local:
        print("raygan: starting a local Ray (it stops with this study)", file=sys.stderr, flush=True)
    try:
        from raygan.raytrain.ddp import quiet_ray_start

        with quiet_ray_start(local):
            context = ray.init(
                address=address,
                runtime_env={"env_vars": env} if env else None,
                log_to_driver=True,
                configure_logging=False,
            )
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        raise RayganError(
            f"cannot join the Ray cluster at --address {address}: {first_line(exc)} (with token "
            f"authentication, set RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token)"
        ) from None
    except Exception as exc:
        if not local:
            raise
        # Seen here: "The current node timed out during startup" on a machine whose cores other
        # jobs held (or a driver started under `nice`, which Ray's GCS and raylet inherit).
        with contextlib.suppress(Exception):  # best effort: the start failed already
            ray.shutdown()  # what did start (the GCS, say) must not outlive this driver
        raise RayganError(
            f"the local Ray did not start: {first_line(exc)} (on a busy machine, retry once the load is "
            f"lower; do not run the study under `nice`, whose priority Ray's own processes inherit: set "
            f"RAY_worker_niceness for the trials instead; or join a running Ray with --address)"
        ) from None
    if local:
        from raygan.raytrain.reaper import start_reaper

        start_reaper()  # its agents would outlive a killed driver (raygan.raytrain.reaper says why)
        cpus = ray.cluster_resources().get("CPU", 0)
        dashboard = f", dashboard http://{context.dashboard_url}" if getattr(context, "dashboard_url", None) else ""
        print(f"raygan: local Ray up ({cpus:g} CPUs{dashboard})", file=sys.stderr, flush=True)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, with the address in the message, where ray.init would retry an unreachable
    host:port for minutes."""
    if address in (None, "auto", "local"):
        return  # ray.init finds (or starts) a cluster itself and fails fast when 'auto' finds none
    scheme, _, hostport = address.rpartition("://")
    host, _, port = hostport.rpartition(":")
    if scheme not in ("", "ray") or not host or not port.isdigit():
        raise RayganError(
            f"--address {address}: expected 'auto', host:port (the head's GCS, port 6379 by default) or "
            f"ray://host:port; a dashboard http:// address is for `ray job submit`, not for --address"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayganError(
            f"cannot reach a Ray cluster at --address {address} ({exc.strerror or exc}); start one with "
            f"`ray start --head`, or pass the head node's address"
        ) from None


def run_plan(plan: Plan, options: RunOptions) -> Path:
    """Run (or resume) every trial of the plan; return the study directory. Trial records are in
    ``rows/`` when this returns; the results layer turns them into Parquet."""
    options.check()
    study_dir = check_study_dir(plan, options)
    check_resumed_concurrency(plan, options, study_dir)
    plan = reconcile(plan, options)
    optuna = None
    if plan.study.is_search and options.optuna_storage:
        # a server named by the user is checked before Ray starts or a study directory is written
        optuna = _optuna_storage(plan, options, study_dir)
    # Tune's own TensorBoard logger would put a second HParams entry beside each trial's writer;
    # keep Tune's CSV/JSON logs, and let raygan's writer own TensorBoard (trials/<key>/tensorboard).
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    _init_ray(options.address)
    study_dir = prepare_study_dir(plan, options)  # after joining Ray: a bad --address leaves no study behind
    if plan.study.is_search and optuna is None:  # the default SQLite file needs the study directory
        optuna = _optuna_storage(plan, options, study_dir)
    from raygan.analysis.study_export import log_driver

    log_driver(study_dir, "start", resume=options.resume)  # wall time and machine, for the committed results

    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    _check_resources(options, ray.cluster_resources())
    plan_info = {"study": plan.study.name, "study_hash": plan.study_hash, "profile": plan.profile,
                 "trials": len(plan.trials) if plan.trials else plan.samples, "epochs": plan.epochs}
    setup = {
        "kind": "search" if plan.study.is_search else "grid",
        "study_dir": str(study_dir),
        "trials": {t.key: t.as_dict() for t in plan.trials},
        "base": plan.base.as_dict() if plan.base else None,
        "workers_per_trial": options.workers_per_trial,
        "cpus_per_trial": options.cpus_per_trial,
        "gpus_per_trial": options.gpus_per_trial,
        "cpus_per_worker": options.cpus_per_worker,
    }
    if options.workers_per_trial:
        # The trial only drives its trainer; its workers hold the CPUs (Ray's default
        # accounting of 1 CPU per trial plus 1 per worker deadlocks on 2 CPUs).
        resources = {"cpu": 0.1}
    else:
        resources = {"cpu": options.cpus_per_trial, **({"gpu": options.gpus_per_trial} if options.gpus_per_trial else {})}
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), resources)
    run_config = tune.RunConfig(
        name=TUNE_DIR,
        storage_path=str(study_dir),
        callbacks=[CSVLoggerCallback(), JsonLoggerCallback(), _recorder(study_dir, plan_info, setup)],
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        verbose=0,  # one line per ended trial instead (Recorder)
    )
    _DRIVER.update(keep_checkpoints=options.keep_checkpoints, study_dir=study_dir, study_hash=plan.study_hash)
    print(resume_summary(study_dir, plan) if options.resume else
          f"study {plan.study.name}, profile {plan.profile}: {plan_info['trials']} trials into {study_dir}",
          file=sys.stderr, flush=True)
    tune_path = study_dir / TUNE_DIR
    with _quiet_missing_trial_results():
        samples = plan.samples
        if options.resume and restorable(study_dir):
            tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_errored=True)
        else:
            if plan.study.is_search and options.resume:  # a copy of an export: no Tune experiment
                samples = _continue_search_without_tune_state(plan, study_dir, optuna)
            tuner = None if plan.study.is_search and not samples else tune.Tuner(
                trainable, **_tuner_arguments(replace(plan, samples=samples), options, optuna), run_config=run_config)
        grid = tuner.fit() if tuner is not None else None
    if grid is not None:
        _sweep(study_dir, plan_info, setup, grid, options.keep_checkpoints)
    log_driver(study_dir, "end")
    # Tune returns normally after Ctrl-C; then the study did not end (a grid: trials without a
    # record; a search: fewer records than samples, every ended trial being recorded, failed too)
    if setup["kind"] == "grid":
        recorded = {r["trial_key"] for r in load_records(study_dir)[0]}
        unended = [t.key for t in plan.trials if t.key not in recorded]
        if unended:
            raise StudyInterrupted(f"{len(unended)} of {len(plan.trials)} trials not ended")
    elif (ended := len(study_records(study_dir, plan.study_hash))) < plan.samples:
        raise StudyInterrupted(f"{plan.samples - ended} of {plan.samples} samples not ended")
    return study_dir


def _continue_search_without_tune_state(plan: Plan, study_dir: Path, optuna: tuple) -> int:
    """A search resumed from a copy of its export has its records and its Optuna study but no Tune
    experiment (no searcher or scheduler state): it runs the samples not yet recorded, TPE going on
    from the trials the Optuna study holds; trials that study still shows running belonged to the
    killed driver and will never report, so they are failed and marked. Returns the samples left."""
    from raygan.tune.optuna_storage import fail_orphans

    storage, study_name = optuna
    recorded = len(study_records(study_dir, plan.study_hash))
    orphans = fail_orphans(storage, study_name, "its driver ended before it reported; continued from an export")
    left = max(0, plan.samples - recorded)
    print(f"raygan: {study_dir} has no Tune experiment (a copy of an export): the search continues in its Optuna "
          f"study ({recorded} trials recorded, {left} to run; TPE goes on from the study's trials, ASHA from the "
          f"records{f'; {orphans} trial(s) left running there failed' if orphans else ''})",
          file=sys.stderr, flush=True)
    return left


class StudyInterrupted(KeyboardInterrupt):
    """The driver was interrupted (Ctrl-C, SIGINT) and Tune ended the running trials early; they
    are not recorded, and --resume continues them from their checkpoints."""


def resume_summary(study_dir: Path, plan: Plan) -> str:
    """What --resume found: trials finished (kept), continuing from a checkpoint, starting afresh."""
    from raygan.raytrain.ddp import RAY_DIR

    records = {r["trial_key"]: r for r in load_records(study_dir)[0]}
    trials_dir = study_dir / TRIALS_DIR
    keys = set(records) | ({d.name for d in trials_dir.iterdir()} if trials_dir.is_dir() else set())
    total = len(plan.trials) if plan.trials else plan.samples
    finished, failed, continuing = 0, 0, []  # continuing: epochs done of each
    setup_epochs = {t.key: t.config["train"]["epochs"] for t in plan.trials}
    for key in sorted(keys):
        status = records.get(key, {}).get("status")
        run_dir = trials_dir / key
        checkpoints = [run_dir / "checkpoints" / "last.pt", *sorted((run_dir / RAY_DIR).glob("*/checkpoint_*/last.pt"))]
        done = _epochs_done([c for c in checkpoints if c.exists()], run_dir)
        if status in ("finished", "stopped") or (status is None and done == setup_epochs.get(key, plan.epochs)):
            finished += 1  # or all epochs done, not recorded yet (or its record damaged): recorded at the end
        elif done is not None:
            continuing.append(done)
        elif status == "failed":
            failed += 1
    fresh = max(0, total - finished - failed - len(continuing))
    parts = [f"{finished} finished (kept, not trained again)"]
    if failed:
        parts.append(f"{failed} failed (recorded; one whose process died is tried again)")
    epochs = ", ".join(f"{e}/{plan.epochs}" for e in continuing[:6]) + (", …" if len(continuing) > 6 else "")
    parts.append(f"{len(continuing)} continue{'s' if len(continuing) == 1 else ''} from a checkpoint"
                 + (f" (epochs done: {epochs})" if continuing else ""))
    parts.append(f"{fresh} start{'s' if fresh == 1 else ''} fresh")
    return f"resuming study {plan.study.name}, profile {plan.profile}, {total} trials: " + ", ".join(parts)


def _epochs_done(checkpoints: list[Path], run_dir: Path) -> int | None:
    """Epochs a trial would not train again: its newest checkpoint's (what a resume starts from;
    metrics.json is written after it), or, with none kept, metrics.json's; None if neither."""
    import torch

    for path in sorted(checkpoints, key=lambda p: p.stat().st_mtime, reverse=True):
        try:  # mmap: only the epoch is read, not 30-110 MB of weights
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
        except Exception:  # noqa: BLE001  (damaged: the loop says so when it resumes)
            continue
    return (_read_json(run_dir / "metrics.json") or {}).get("epochs") if (run_dir / "metrics.json").exists() else None


class _MissingTrialResults:
    """A logging filter for Tune's "Failed to fetch metrics for N trial(s) ... result.json and
    progress.csv were not found": Tune's ExperimentAnalysis reads every trial's result files when a
    Tuner is restored or finishes, and a trial that had not reported an epoch yet (interrupted,
    waiting, or a configuration error before its first epoch) has none. raygan's results come
    from rows/, never from those files, so the warning only alarms."""

    def filter(self, record) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for")


@contextlib.contextmanager
def _quiet_missing_trial_results():
    import logging

    logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    only = _MissingTrialResults()
    logger.addFilter(only)
    try:
        yield
    finally:
        logger.removeFilter(only)


def _optuna_storage(plan: Plan, options: RunOptions, study_dir: Path) -> tuple:
    """(storage, Optuna study name) of a search, checked: reachable, not holding another run of the
    search, and on --resume the storage the interrupted run used."""
    from raygan.tune.optuna_storage import check_storage, default_url, open_storage, shown

    url = options.optuna_storage or default_url(study_dir)
    saved = (_read_json(study_dir / STUDY_FILE) or {}).get("options", {})
    if options.resume and "optuna_storage" in saved and saved["optuna_storage"] != options.optuna_storage:
        was = saved["optuna_storage"] or default_url(study_dir)
        raise RayganError(f"--resume: the interrupted search kept its Optuna study in {shown(was)}, not "
                          f"{shown(url)}; pass --optuna-storage as before")
    storage = open_storage(url)
    return storage, check_storage(storage, url, plan.study.name, plan.study_hash, options.resume)


def _tuner_arguments(plan: Plan, options: RunOptions, optuna: tuple | None = None) -> dict:
    from ray import tune

    if not plan.study.is_search:
        return {
            "param_space": {"trial": tune.grid_search([t.key for t in plan.trials])},
            "tune_config": tune.TuneConfig(
                max_concurrent_trials=tune_concurrency(plan, options.max_concurrent),
                reuse_actors=not options.workers_per_trial,
            ),
        }
    from raygan.tune.asha import RungsFromRecords
    from raygan.tune.optuna_storage import TrackedOptunaSearch

    profile = plan.study.profile(plan.profile)
    storage, study_name = optuna if optuna is not None else (None, None)
    searcher = TrackedOptunaSearch(space=SearchSpace(plan.study.search_space, profile), metric=SEARCH_METRIC,
                                   mode="max", seed=options.search_seed, storage=storage, study_name=study_name)
    scheduler = RungsFromRecords(  # ASHA, its rungs filled again from the records on --resume
        time_attr="epochs_done", metric=SEARCH_METRIC, mode="max", max_t=plan.epochs,
        grace_period=min(options.grace_epochs, plan.epochs), reduction_factor=2,
    )
    return {
        "tune_config": tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=plan.samples,
            max_concurrent_trials=tune_concurrency(plan, options.max_concurrent),
            reuse_actors=not options.workers_per_trial,
        )
    }


class SearchSpace:
    """The study's define-by-run space bound to its profile. A module-level class (not a closure):
    Tune pickles the searcher, with its space, into the experiment state that --resume restores."""

    def __init__(self, space, profile) -> None:
        self.space, self.profile = space, profile

    def __call__(self, trial):
        return self.space(trial, self.profile)


def _check_resources(options: RunOptions, available: dict) -> None:
    cpus = available.get("CPU", 0)
    gpus = available.get("GPU", 0)
    if options.workers_per_trial:
        need = 0.1 + options.workers_per_trial * options.cpus_per_worker
        if need > cpus:
            raise ConfigError(
                f"--workers-per-trial {options.workers_per_trial} x --cpus-per-worker {options.cpus_per_worker:g} "
                f"(+0.1 for the trial) needs {need:g} CPUs; the Ray cluster has {cpus:g}. Lower --cpus-per-worker."
            )
    elif options.cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial {options.cpus_per_trial:g} exceeds the cluster's {cpus:g} CPUs")
    if options.gpus_per_trial and options.gpus_per_trial > gpus and not options.workers_per_trial:
        raise ConfigError(f"--gpus-per-trial {options.gpus_per_trial:g} but the Ray cluster has {gpus:g} GPUs")


def _sweep(study_dir: Path, plan_info: dict, setup: dict, grid, keep_checkpoints: str = "selected") -> None:
    """Record any ended trial the callback did not (e.g. ended while a previous driver died)."""
    # A damaged record counts as missing: it is written again from the trial's metrics.json.
    have = {r["trial_key"] for r in load_records(study_dir)[0]}
    for result in grid:
        config = result.config or {}
        metrics = result.metrics or {}
        key = config.get("trial") if setup["kind"] == "grid" else metrics.get("trial_key")
        if key is None or key in have:
            continue

        class _Ended:  # the fields trial_record needs, from a Result
            trial_id = metrics.get("trial_id", "")

            @staticmethod
            def get_error():
                return result.error

        if setup["kind"] == "grid":
            spec = setup["trials"][key]
            factors, cfg = spec["factors"], spec["config"]
        else:
            sampled = dict(config)
            factors, cfg = {**setup["base"]["factors"], **sampled}, apply_sampled(setup["base"]["config"], sampled)
        status = "failed" if result.error is not None else "terminated"
        error = _error_message(study_dir / TRIALS_DIR / key, _Ended) if status == "failed" else None
        record = trial_record(study_dir, plan_info, key, _Ended.trial_id, status, error, factors, cfg, metrics)
        if interrupted(record, setup):
            continue
        write_record(study_dir, record)
        if record["status"] == "finished":
            prune_checkpoints(study_dir / TRIALS_DIR / key, keep_checkpoints)
