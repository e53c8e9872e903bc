"""Ray Train layer: the same epoch loop, data-parallel under a TorchTrainer (DDP).

Nothing about models or losses lives here. Each worker runs `raygan.engine.loop.train` with a
`DistributedContext` whose ``wrap`` is Ray's ``prepare_model`` (DistributedDataParallel; gloo on
CPU, NCCL on GPU). The global batch is the configured one: each of the N workers trains its
1/N slice of every global batch (see `AnomalyBatchSampler`). Rank 0 scores validation and test on
the whole sets, writes TensorBoard, checkpoints and metrics, and reports once per epoch with a
checkpoint; every rank reports, because `ray.train.report` is a barrier.

A run resumes from its latest checkpoint when started again with the same ``--out``: the Ray run
is named after the configuration hash and stored under ``<out>/ray``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.core.errors import ConfigError, RayganError
from raygan.data.splits import build_split, load_for_config
from raygan.engine.checkpoints import LAST
from raygan.engine.run_dir import METRICS_FILE, RAY_DIR, last_checkpoint, run_summary, scalars
from raygan.methods import METHODS
from raygan.raytrain.startup import check_reachable, check_resources, start_ray

RESULT_FILE = "result.json"  # in the trainer's checkpoint: rank 0's result, for the driver


def check_scaling(cfg: RunConfig, workers: int, gpus_per_worker: float, cpus_per_worker: float, sync_bn: bool) -> None:
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 for distributed training; got {workers}")
    if cfg.train.batch_size % workers:
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} is not divisible by --workers {workers}: the global "
            f"batch is split evenly, each worker gets batch_size / workers"
        )
    if sync_bn and gpus_per_worker <= 0:
        raise ConfigError(
            "--sync-bn needs GPUs (--gpus-per-worker > 0): torch's SyncBatchNorm only runs on GPU "
            "modules. On CPU each worker normalises with its own batch statistics (docs/training.md)."
        )
    if cpus_per_worker <= 0:
        raise ConfigError(f"--cpus-per-worker must be > 0; got {cpus_per_worker}")


def _train_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch
    from torch import nn

    from raygan.compute.distributed import DistributedContext
    from raygan.engine.loop import train

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    cfg = RunConfig.from_dict(loop_config["config"])
    out_dir = Path(loop_config["out_dir"])
    if loop_config["threads"]:
        torch.set_num_threads(loop_config["threads"])

    def wrap(module: nn.Module, options: dict) -> nn.Module:
        if loop_config["sync_bn"]:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if world == 1:  # prepare_model does not wrap a single worker; nothing to synchronise
            return ray.train.torch.prepare_model(module, parallel_strategy=None)
        return ray.train.torch.prepare_model(module, parallel_strategy_kwargs=options)

    resume_from = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        resume_from = Path(checkpoint.to_directory()) / LAST

    extra = {"node_id": ray.get_runtime_context().get_node_id(), **loop_config.get("extra_metrics", {})}

    def report(record: dict, checkpoint_path: Path | None, result: dict | None = None) -> None:
        record = {**record, **extra}
        if "epoch" in record:
            record["epochs_done"] = record["epoch"] + 1
        if rank == 0 and (out_dir / METRICS_FILE).exists():
            # the run so far at its validation-selected epoch (what a Tune search reads)
            record.update(run_summary(json.loads((out_dir / METRICS_FILE).read_text())))
        if checkpoint_path is None:
            ray.train.report(scalars(record))
            return
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy2(checkpoint_path, Path(tmp) / LAST)
            if result is not None:
                (Path(tmp) / RESULT_FILE).write_text(json.dumps(result))
            ray.train.report(scalars(record), checkpoint=ray.train.Checkpoint.from_directory(tmp))

    device = ray.train.torch.get_device()
    result = train(
        cfg,
        out_dir=out_dir,
        on_epoch_end=report,
        device=device,
        distributed=DistributedContext(rank, world, wrap, device),
        resume_from=resume_from,
        hparams=loop_config.get("hparams"),
    )
    # One more report on every rank (a barrier): rank 0's checkpoint carries the final result to
    # the driver, which may run on another node than rank 0. It repeats the last epoch's metrics
    # so that a Tune scheduler reading this report sees them too.
    last = last_checkpoint(out_dir) if rank == 0 else None
    final = {**result["history"][-1], "final": True} if rank == 0 else {"final": True}
    report(final, last, result if rank == 0 else None)


def train_with_ray(
    cfg: RunConfig,
    out_dir: Path | None,
    workers: int,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    sync_bn: bool = False,
    address: str | None = None,
    threads: int | None = None,
    callbacks: list | None = None,
    hparams: dict | None = None,
    extra_metrics: dict | None = None,
) -> dict:
    """Run one training as a Ray Train TorchTrainer with ``workers`` DDP workers; return rank 0's result.

    ``callbacks`` are Ray Train callbacks (a Tune trial passes TuneReportCallback to forward rank
    0's per-epoch reports); ``extra_metrics`` are added to every report.
    """
    cfg = METHODS.get(cfg.method).resolve(cfg)
    check_scaling(cfg, workers, gpus_per_worker, cpus_per_worker, sync_bn)
    check_reachable(address)  # seconds, before the data loads; ray.init would retry for minutes
    build_split(load_for_config(cfg.data), cfg.data)  # bad data arguments fail here, not in a worker
    out_dir = (out_dir or Path(tempfile.mkdtemp(prefix="raygan-train-"))).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    from ray.train import CheckpointConfig, FailureConfig, RunConfig as RayRunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # Workers print nothing useful to stdout; keeping it off the driver keeps the JSON line last.
    start_ray(address, stops_with=None, log_to_driver=False)
    check_resources(f"--workers {workers} x --cpus-per-worker {cpus_per_worker:g}", cpus=workers * cpus_per_worker,
                    remedy="Use fewer --workers or a fractional --cpus-per-worker (e.g. 0.5).")
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "config": cfg.to_dict(),
            "out_dir": str(out_dir),
            "sync_bn": sync_bn,
            "threads": threads,
            "hparams": hparams,
            "extra_metrics": extra_metrics or {},
        },
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RayRunConfig(
            # Same configuration, same name and storage: Ray resumes from the latest checkpoint.
            name=f"train-{cfg.stable_hash()}",
            storage_path=str(out_dir / RAY_DIR),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=0),
            callbacks=callbacks or None,
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors; show the worker's own message, keep its kind
        raise _worker_error_class(exc)(f"distributed training failed: {_root_message(exc)}") from None
    with result.checkpoint.as_directory() as directory:
        final = json.loads((Path(directory) / RESULT_FILE).read_text())
    final["workers"] = workers
    return final


def _worker_error_class(exc: BaseException) -> type[RayganError]:
    """The raygan error class a worker raised, found through Ray's wrappers (causes, contexts,
    RayTaskError.cause, WorkerGroupError.worker_failures), so callers can still tell a NaN loss or a bad config from a lost node."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, RayganError):  # Ray's RayTaskError(X) subclasses X: take raygan's own class
            return next(c for c in type(error).__mro__ if issubclass(c, RayganError) and c.__module__.startswith("raygan."))
        pending += [error.__cause__, error.__context__, getattr(error, "cause", None),
                    *getattr(error, "worker_failures", {}).values()]  # Ray Train's WorkerGroupError: rank -> error
    return RayganError


def _root_message(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and not line.startswith(("File ", "^", "~")):
            return line
    return type(exc).__name__
