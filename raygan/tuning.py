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

import json
import math
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raygan.config import RunConfig
from raygan.errors import ConfigError, RayganError
from raygan.study import SEARCH_METRIC, Study, Trial, apply_sampled

STUDY_FILE = "study.json"
TUNE_DIR = "tune"
TRIALS_DIR = "trials"
ROWS_DIR = "rows"
ERROR_FILE = "error.txt"
ATTEMPTS_FILE = "attempts.jsonl"
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

        from raygan.loop import train

        torch.set_num_threads(max(1, int(setup["cpus_per_trial"])))
        from raygan.devices import resolve_device

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
        (out_dir / ERROR_FILE).write_text(message + "\n\n" + traceback.format_exc())
        if _is_deterministic(exc):
            # Ending normally keeps Tune from retrying it (FailureConfig retries every raised
            # error); the recorder reads error.txt and records the trial as failed.
            return
        raise


def _is_deterministic(exc: Exception) -> bool:
    """An error that a retry from the same checkpoint and seed would raise again. DataError is
    not one: a data set missing on one node may be present on another."""
    from raygan.loop import NonFiniteLoss

    return isinstance(exc, (ConfigError, NonFiniteLoss))


def _log_attempt(out_dir: Path, identity: dict) -> None:
    """Append this attempt (node, host, the epoch its checkpoint resumes from) to attempts.jsonl."""
    from raygan.checkpoints import LAST, load_checkpoint

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
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_ddp(cfg: RunConfig, out_dir: Path, setup: dict, factors: dict, identity: dict) -> None:
    """The trial drives a Ray Train DDP trainer; rank 0's per-epoch reports reach Tune through
    TuneReportCallback. The trainer's run is named after the config and stored in the trial's
    directory, so a restored trial resumes from the trainer's last checkpoint."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from raygan.ray_train import train_with_ray

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
    rows = study_dir / ROWS_DIR
    rows.mkdir(parents=True, exist_ok=True)
    tmp = rows / f".{record['trial_key']}.json.tmp"
    tmp.write_text(json.dumps(record, default=_json_default) + "\n")
    tmp.replace(rows / f"{record['trial_key']}.json")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def read_records(study_dir: Path) -> list[dict]:
    rows = study_dir / ROWS_DIR
    if not rows.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(rows.glob("*.json"))]


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


def _recorder(study_dir: Path, plan_info: dict, setup: dict):
    from ray.tune import Callback

    class Recorder(Callback):
        """Writes a trial's record the moment it ends, so a killed driver loses nothing, and prints
        one line about it."""

        ended = 0

        def _write(self, trial, status: str) -> None:
            key = _key_of(trial, setup["kind"])
            existing = _read_json(study_dir / ROWS_DIR / f"{key}.json")
            if existing is not None and existing["status"] == "finished":
                return  # a restored driver saw it end again; the first record stands
            factors, config = _factors_of(trial, setup)
            error = _error_message(study_dir / TRIALS_DIR / key, trial) if status == "failed" else None
            record = trial_record(study_dir, plan_info, key, trial.trial_id, status, error, factors, config,
                                  trial.last_result)
            write_record(study_dir, record)
            self.ended += 1
            metrics = record["metrics"]
            detail = (f"error: {record['error']}" if record["status"] == "failed" else
                      f"test AUROC {metrics.get('auroc', float('nan')):.4f} (validation {metrics.get('auroc_val', float('nan')):.4f}, "
                      f"epoch {metrics.get('selected_epoch')} of {metrics.get('epochs')})")
            total = f"/{plan_info['trials']}" if plan_info.get("trials") else ""
            print(f"[{self.ended}{total}] {key} {record['status']}: {detail}", file=sys.stderr, flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._write(trial, "terminated")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._write(trial, "failed")

        def on_trial_recover(self, iteration, trials, trial, **info):
            key = _key_of(trial, setup["kind"])
            error = _error_message(study_dir / TRIALS_DIR / key, trial) or "its process or node died"
            last = trial.last_result or {}
            where = f"{last['hostname']} (node {str(last.get('node_id'))[:8]})" if last.get("hostname") else "its node"
            print(f"{key} failed on {where}: {error}; retry {trial.run_metadata.num_failures} of "
                  f"{trial.max_failures}, from its last checkpoint", file=sys.stderr, flush=True)

    return Recorder()


# --------------------------------------------------------------------------------------------
# Driver


def check_study_dir(plan: Plan, options: RunOptions) -> Path:
    """Refuse to mix different studies or profiles in one directory, or to resume nothing."""
    study_dir = study_dir_for(options.storage, plan.study)
    manifest_path = study_dir / STUDY_FILE
    if manifest_path.exists():
        saved = _read_json(manifest_path) or {}
        if not options.resume:
            raise RayganError(
                f"{study_dir} already holds a run of study {saved.get('study')} (profile {saved.get('profile')}); "
                f"pass --resume to continue it, or --storage DIR for a fresh one"
            )
        if saved.get("study_hash") != plan.study_hash:
            raise RayganError(
                f"--resume: {study_dir} holds study {saved.get('study')} profile {saved.get('profile')} with other "
                f"trials (hash {saved.get('study_hash')}, now {plan.study_hash}); use the same profile and flags "
                f"as the interrupted run, or --storage DIR for a new study"
            )
    elif options.resume:
        raise RayganError(f"--resume: nothing to resume at {study_dir}; run without --resume to start the study")
    return study_dir


def prepare_study_dir(plan: Plan, options: RunOptions) -> Path:
    """Check, then create the study directory and its manifest."""
    study_dir = check_study_dir(plan, options)
    manifest_path = study_dir / STUDY_FILE
    study_dir.mkdir(parents=True, exist_ok=True)
    if not manifest_path.exists():
        tmp = study_dir / f".{STUDY_FILE}.tmp"
        tmp.write_text(json.dumps(plan.manifest(options), indent=1) + "\n")
        tmp.replace(manifest_path)
    return study_dir


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    _check_reachable(address)
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": env} if env else None,
            log_to_driver=True,
            configure_logging=False,
        )
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayganError(
            f"cannot join the Ray cluster at --address {address}: {first} (with token authentication, set "
            f"RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token)"
        ) from None


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
    check_study_dir(plan, options)
    # Tune's own TensorBoard logger would put a second HParams entry beside each trial's writer;
    # keep Tune's CSV/JSON logs, and let raygan's writer own TensorBoard (trials/<key>/tensorboard).
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    _init_ray(options.address)
    study_dir = prepare_study_dir(plan, options)  # after joining Ray: a bad --address leaves no study behind

    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    _check_resources(options, ray.cluster_resources())
    plan_info = {"study": plan.study.name, "study_hash": plan.study_hash, "profile": plan.profile,
                 "trials": len(plan.trials) if plan.trials else plan.samples}
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
        # The trial only drives its trainer; its workers hold the CPUs (RAY_NOTES: default
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
    tune_path = study_dir / TUNE_DIR
    if options.resume and tune.Tuner.can_restore(str(tune_path)):
        tuner = tune.Tuner.restore(str(tune_path), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, **_tuner_arguments(plan, options), run_config=run_config)
    grid = tuner.fit()
    _sweep(study_dir, plan_info, setup, grid)
    return study_dir


def _tuner_arguments(plan: Plan, options: RunOptions) -> dict:
    from ray import tune

    if not plan.study.is_search:
        return {
            "param_space": {"trial": tune.grid_search([t.key for t in plan.trials])},
            "tune_config": tune.TuneConfig(
                max_concurrent_trials=options.max_concurrent,
                reuse_actors=not options.workers_per_trial,
            ),
        }
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    profile = plan.study.profile(plan.profile)
    searcher = OptunaSearch(space=SearchSpace(plan.study.search_space, profile), metric=SEARCH_METRIC,
                            mode="max", seed=options.search_seed)
    scheduler = ASHAScheduler(
        time_attr="epochs_done", metric=SEARCH_METRIC, mode="max", max_t=plan.epochs,
        grace_period=min(options.grace_epochs, plan.epochs), reduction_factor=2,
    )
    return {
        "tune_config": tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=plan.samples,
            # One at a time by default: TPE's suggestions then do not depend on completion order,
            # so a seeded search is reproducible (RAY_NOTES); raise it for throughput.
            max_concurrent_trials=options.max_concurrent or 1,
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


def _sweep(study_dir: Path, plan_info: dict, setup: dict, grid) -> None:
    """Record any ended trial the callback did not (e.g. ended while a previous driver died)."""
    have = {r["trial_key"] for r in read_records(study_dir)}
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
        write_record(study_dir, trial_record(study_dir, plan_info, key, _Ended.trial_id, status, error,
                                             factors, cfg, metrics))
