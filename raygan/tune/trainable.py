"""The trainable: one trial, run inside its Tune trial process.

A trial trains in-process by default (cheap: actors are reused), or launches the Ray Train DDP
trainer with ``workers_per_trial``; the same epoch loop runs either way. A search trial over
several instances trains its configuration on each in turn, in-process, and reports once per
instance (raygan.tune.racing races them). Its run directory is
``trials/<key>/``, keyed by the trial (never by time), so a restored or retried trial resumes from
its last checkpoint instead of starting over, and a finished one is not trained again. On several
nodes this holds only if ``--storage`` is one shared file system mounted at the same path on every
node (NFS, EFS): a trial on a node that cannot see the study directory fails with a message
saying so.

Retries (``max_failures``): a trial that dies (its node lost, out of memory, a crash) is retried
from its last checkpoint. A deterministic error (an impossible configuration, a diverged loss)
would only fail again from the same checkpoint and seed, so the trial ends at once, recorded as
failed with its message (error.txt), and is not retried. Each attempt is logged in
``trials/<key>/attempts.jsonl`` (node, host, the epoch it started from).
"""

from __future__ import annotations

import json
import socket
import traceback
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.core.errors import ConfigError, RayganError
from raygan.core.paths import DISK_FULL
from raygan.engine.run_dir import METRICS_FILE, last_checkpoint, run_summary, scalars
from raygan.engine.tensorboard import hparam_values
from raygan.store.layout import instance_dir, trial_dir
from raygan.store.manifest import manifest_path
from raygan.store.records import read_record
from raygan.store.trial_files import clear_error, log_attempt, read_json, write_error, write_instances
from raygan.study import apply_sampled
from raygan.tune.context import TrialSetup


def quiet_disk_full_in_threads() -> None:
    """TensorBoard's writer thread prints a traceback when the disk is full; the trial's own write
    fails too and ends it, and the driver says so in one line."""
    import threading

    default = threading.excepthook
    if getattr(default, "raygan_quiet", False):
        return

    def hook(args) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL:
            return
        default(args)

    hook.raygan_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def run_trial(tune_config: dict, setup: TrialSetup) -> None:
    """Train one trial and report each epoch to Tune."""
    import ray
    from ray import tune

    quiet_disk_full_in_threads()
    key = setup.trial_key(tune_config, tune.get_context().get_trial_id())
    factors, config = setup.factors_and_config(tune_config)
    study_dir = Path(setup.study_dir)
    if not manifest_path(study_dir).exists():
        # The driver wrote study.json before any trial started: this node has another file system.
        # Raised (not returned): a retry may land on a node that does see the storage.
        raise RayganError(
            f"--storage {study_dir.parent} is not visible on node {socket.gethostname()} "
            f"({ray.util.get_node_ip_address()}): with several nodes, --storage must be a shared file "
            f"system (NFS, EFS) mounted at the same path on every node"
        )
    out_dir = trial_dir(study_dir, key)
    done = _finished_before(study_dir, key, config)
    if done is not None:
        # Recorded as finished before the driver died (Tune's state may predate that): report
        # its end state once, train nothing.
        tune.report({**scalars(done["history"][-1]), **run_summary(done["metrics"]),
                     "epochs_done": done["history"][-1]["epoch"] + 1, "trial_key": key,
                     "node_id": done.get("node_id"), "hostname": done.get("hostname")})
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_error(out_dir)
    identity = {
        "trial_key": key,
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
    }
    log_attempt(out_dir, identity)
    reported = []
    try:
        cfg = RunConfig.from_dict(config)
        if setup.workers_per_trial and not setup.instances:
            _run_ddp(cfg, out_dir, setup, factors, identity)
            return

        import torch

        from raygan.compute.devices import resolve_device
        from raygan.engine.loop import train

        torch.set_num_threads(max(1, int(setup.cpus_per_trial)))
        if setup.keep_data:
            from raygan.data.prepared import keep_prepared_data

            keep_prepared_data()
        # Ray set CUDA_VISIBLE_DEVICES to this trial's share: "cuda" is that GPU, and a GPU request
        # where none is visible fails the trial with one line instead of training on the CPU.
        device = resolve_device("cuda") if setup.gpus_per_trial else torch.device("cpu")
        if setup.instances:
            run_instances(dict(tune_config), setup, out_dir, device, identity)
            return

        def on_epoch_end(record: dict, checkpoint) -> None:
            metrics = json.loads((out_dir / METRICS_FILE).read_text())
            reported.append(record["epoch"])
            tune.report({**scalars(record), **run_summary(metrics), "epochs_done": record["epoch"] + 1, **identity})

        result = train(cfg, out_dir=out_dir, on_epoch_end=on_epoch_end, device=device, hparams=hparam_values(factors))
        if not reported:  # restored after it had finished: report the end state once
            last = result["history"][-1]
            tune.report({**scalars(last), **run_summary(result), "epochs_done": last["epoch"] + 1, **identity})
    except Exception as exc:
        message = str(exc) if isinstance(exc, RayganError) else f"{type(exc).__name__}: {exc}"
        write_error(out_dir, message, traceback.format_exc())
        if _is_deterministic(exc):
            # Ending normally keeps Tune from retrying it (FailureConfig retries every raised
            # error); the recorder reads error.txt and records the trial as failed.
            return
        raise


def run_instances(sampled: dict, setup: TrialSetup, out_dir: Path, device, identity: dict) -> None:
    """A search trial over several instances: the sampled configuration trained from scratch on each
    instance in the search's order (``trials/<key>/i<index>-<instance>/``, epoch chosen on
    validation), one report per instance: its index, validation and test AUROC, and the mean
    validation AUROC over the instances done (the objective). An instance that finished before
    (a resumed trial) is read back, not trained again; one cut short resumes from its checkpoint."""
    from ray import tune

    from raygan.engine.loop import train
    from raygan.tune.racing import INSTANCE, INSTANCE_VALUE, INSTANCES_DONE, MEAN_VALUE

    done: list[dict] = []
    for index, spec in enumerate(setup.instances):
        cfg = RunConfig.from_dict(apply_sampled(spec["config"], sampled))
        run_dir = instance_dir(out_dir, index, spec["key"])
        metrics = read_json(run_dir / METRICS_FILE)
        if not metrics or metrics.get("epochs") != cfg.train.epochs:
            metrics = train(cfg, out_dir=run_dir, device=device, hparams=hparam_values({**spec["factors"], **sampled}))
        done.append({"instance": index, "key": spec["key"], **spec["factors"],
                     **{k: metrics.get(k) for k in ("auroc_val", "auroc", "auroc_last", "selected_epoch", "epochs",
                                                     "train_seconds")}})
        write_instances(out_dir, done)
        values = [d["auroc_val"] for d in done]
        tune.report({INSTANCE: index, INSTANCE_VALUE: metrics.get("auroc_val"), "instance_auroc": metrics.get("auroc"),
                     MEAN_VALUE: sum(values) / len(values), INSTANCES_DONE: len(done), **identity})


def _finished_before(study_dir: Path, key: str, config: dict) -> dict | None:
    """The trial's finished record (status, history, metrics), if an earlier driver saw it finish;
    None if it is to be trained."""
    done = read_record(study_dir, key)
    if done is None or done.get("status") != "finished":
        # No readable record, yet every epoch trained and last.pt deleted by --keep-checkpoints:
        # it finished (its record was damaged); training it again would start from scratch.
        out_dir = trial_dir(study_dir, key)
        metrics = read_json(out_dir / METRICS_FILE)
        if (metrics and metrics.get("history") and not last_checkpoint(out_dir).exists()
                and metrics.get("epochs") == RunConfig.from_dict(config).train.epochs):
            done = {"status": "finished", "history": metrics["history"], "metrics": metrics}
    return done if done is not None and done["status"] == "finished" and done["history"] else None


def _is_deterministic(exc: Exception) -> bool:
    """An error that a retry from the same checkpoint and seed would raise again. DataError is
    not one: a data set missing on one node may be present on another."""
    from raygan.engine.loop import NonFiniteLoss

    return isinstance(exc, (ConfigError, NonFiniteLoss))


def _run_ddp(cfg: RunConfig, out_dir: Path, setup: TrialSetup, factors: dict, identity: dict) -> None:
    """The trial drives a Ray Train DDP trainer; rank 0's per-epoch reports reach Tune through
    TuneReportCallback. The trainer's run is named after the config and stored in the trial's
    directory, so a restored trial resumes from the trainer's last checkpoint."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from raygan.raytrain.ddp import train_with_ray

    train_with_ray(
        cfg,
        out_dir,
        workers=setup.workers_per_trial,
        gpus_per_worker=setup.gpus_per_trial,
        cpus_per_worker=setup.cpus_per_worker,
        threads=max(1, int(setup.cpus_per_worker)),
        callbacks=[TuneReportCallback()],
        hparams=hparam_values(factors),
        extra_metrics={"trial_key": identity["trial_key"], "hostname": identity["hostname"]},
    )
