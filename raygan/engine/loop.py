"""The one epoch loop used by the CLI, Ray Train and Tune.

Per epoch: train on the anomaly-aware batches, then score the validation and test sets with the
networks in eval mode. The epoch is selected on validation (AUROC by default) and never on the
test set; test AUROC is reported at the selected epoch and at the last one. A best-test-epoch
figure is kept only under a name that says it is optimistic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raygan.compute.devices import configure_backends
from raygan.compute.distributed import DistributedContext
from raygan.core.atomic import atomic_path, write_text
from raygan.core.config import RunConfig
from raygan.core.errors import RayganError
from raygan.data import AnomalyBatchSampler, build_split, load_for_config, split_tensors
from raygan.data.prepared import prepared_data
from raygan.data.splits import SplitTensors
from raygan.engine.checkpoints import load_checkpoint, save_checkpoint
from raygan.engine.evaluation import choose_threshold, detection_metrics
from raygan.engine.latency import scoring_ms_per_image
from raygan.engine.run_dir import (
    CONFIG_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    TEST_SCORES,
    last_checkpoint,
    selected_checkpoint,
)
from raygan.methods import Method, build_method
from raygan.models import count_parameters

EpochCallback = Callable[[dict, Path | None], None]
GRID_IMAGES = 8
# Inputs up to this side length live on the training device for the whole run (Fashion-MNIST at
# 32×32: 287 MB in fp32); larger ones stay on the host and each batch goes over from pinned memory.
RESIDENT_MAX_SIZE = 32


class NonFiniteLoss(RayganError):
    """A loss term became NaN or infinite; the run stops instead of reporting a NaN AUROC."""


@dataclass
class RunState:
    """What a checkpoint restores besides the networks."""

    epoch: int = 0  # epochs completed
    global_step: int = 0
    history: list[dict] = field(default_factory=list)


def prepare_torch(cfg: RunConfig, device: torch.device = torch.device("cpu")) -> None:
    configure_backends(device, cfg.train.deterministic)
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.use_deterministic_algorithms(cfg.train.deterministic)


def load_split_tensors(cfg: RunConfig) -> tuple[SplitTensors, dict]:
    """The run's data, from this process's prepared data where it keeps some (a Tune trial)."""
    prepared = prepared_data()
    if prepared is not None:
        dataset, split, tensors = prepared.split(cfg.data)
    else:
        dataset = load_for_config(cfg.data)
        split = build_split(dataset, cfg.data)
        tensors = split_tensors(dataset, split, cfg.data.image_size)
    info = {"counts": split.counts(), "location": dataset.location, "class_names": dataset.class_names}
    return tensors, info


def select_epoch(history: list[dict], rule: str) -> dict:
    """The selected epoch's record: best validation AUROC (earliest on ties), lowest val_loss, or last."""
    if rule == "last":
        return history[-1]
    if rule == "val_loss":
        return min(history, key=lambda h: (h["val_loss"], h["epoch"]))
    valid = [h for h in history if not math.isnan(h["auroc_val"])]
    if not valid:
        raise RayganError(
            "train.select val_auroc needs anomalies in the validation split, and it has none; "
            "use --select val_loss or --select last"
        )
    return max(valid, key=lambda h: (h["auroc_val"], -h["epoch"]))


class LossWindow:
    """Loss terms summed on the device over the steps since the last read.

    Reading a CUDA tensor on the host waits for every kernel queued before it, so the step loop
    never does; `read` brings the sums over (one copy for all terms) every train.log_every steps
    and at the end of the epoch. A NaN or inf in any step stays in the sum, so it is still caught,
    named by term and located to the window's steps.
    """

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.total: torch.Tensor | None = None
        self.steps = 0
        self.first_step = 0

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        if self.steps == 0:
            self.names, self.first_step = tuple(terms), step
        elif tuple(terms) != self.names:
            raise RuntimeError("loss terms changed within a window; read it first")  # caller's bug
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        self.total = values if self.total is None else self.total + values
        self.steps += 1

    def changes(self, terms: dict) -> bool:
        return self.steps > 0 and tuple(terms) != self.names

    def read(self, epoch: int, global_step: int) -> dict[str, float]:
        """The window's per-term sums on the host (empties the window); raises NonFiniteLoss."""
        if self.steps == 0:
            return {}
        sums = dict(zip(self.names, self.total.tolist()))
        last_step = self.first_step + self.steps - 1
        first_global = global_step - self.steps + 1
        for name, value in sums.items():
            if not math.isfinite(value):
                where = f"step {last_step}" if self.steps == 1 else f"steps {self.first_step}-{last_step}"
                steps = f"step {global_step}" if self.steps == 1 else f"steps {first_global}-{global_step}"
                raise NonFiniteLoss(
                    f"loss term {name} became {value} at epoch {epoch}, {where} (global {steps}); the run "
                    f"stopped. Lower train.lr or the loss weights, or change the seed."
                )
        self.total, self.steps = None, 0
        return sums


class EpochBatches:
    """Training mini-batches on the device, from the sampler's positions.

    Resident inputs (up to RESIDENT_MAX_SIZE) are on the device already: each epoch's positions go
    over in one copy and every batch is an index gather there. Larger inputs are gathered on the
    host into pinned memory and copied without blocking. Targets stay on the host: methods count
    normals and anomalies there without waiting for the device.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
        self.device = device
        self.y = y.cpu()
        self.resident = x.shape[-1] <= RESIDENT_MAX_SIZE
        self.x = x.to(device) if self.resident else x

    def epoch(self, sampler: AnomalyBatchSampler):
        """(x on the device, y on the host) per step of the sampler's current epoch."""
        positions = list(sampler)
        if self.resident:
            flat = _pinned(torch.cat(positions), self.device).to(self.device, non_blocking=True)
            offset = 0
            for idx in positions:
                yield self.x.index_select(0, flat[offset : offset + len(idx)]), self.y[idx]
                offset += len(idx)
        else:
            for idx in positions:
                yield _pinned(self.x[idx], self.device).to(self.device, non_blocking=True), self.y[idx]


def _pinned(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Only page-locked host memory copies to a GPU without blocking the host.
    return x.pin_memory() if device.type == "cuda" else x


def place_tensors(tensors: SplitTensors, device: torch.device) -> SplitTensors:
    """Validation and test images on the device once per run (resident sizes only); targets stay on the host."""
    if device.type == "cpu" or tensors.image_size > RESIDENT_MAX_SIZE:
        return tensors
    return dataclasses.replace(tensors, val_x=tensors.val_x.to(device), test_x=tensors.test_x.to(device))


def _progress(total: int, epoch: int, epochs: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", file=sys.stderr,
                disable=not enabled, leave=False, dynamic_ncols=True)


def train(
    cfg: RunConfig,
    out_dir: Path | None = None,
    progress: bool = False,
    on_epoch_end: EpochCallback | None = None,
    tensors: SplitTensors | None = None,
    device: str | torch.device = "cpu",
    distributed: DistributedContext | None = None,
    resume_from: Path | None = None,
    hparams: dict | None = None,
    on_start: Callable[[Method], None] | None = None,
) -> dict:
    """Train one run to the end and return its result.

    Resumes from ``resume_from`` (a checkpoint file) or else from ``out_dir``'s last checkpoint.
    Under ``distributed`` every rank trains its shard of each global batch; only rank 0 scores,
    writes TensorBoard, checkpoints and metrics, and returns the result (other ranks return {}).
    ``hparams`` is what TensorBoard's HParams dashboard lists for the run (default: the whole
    config; a study passes its factors). ``on_start`` sees the built method before the first
    epoch (`raygan train` prints its networks and their size).
    """
    device = torch.device(device)
    prepare_torch(cfg, device)
    is_main = distributed is None or distributed.is_main
    world_size = distributed.world_size if distributed is not None else 1
    data_info: dict = {}
    if tensors is None:
        tensors, data_info = load_split_tensors(cfg)
    method = build_method(cfg, tensors.channels, tensors.image_size, device)
    cfg = method.cfg  # resolved: the method's paper defaults filled in
    if on_start is not None and is_main:
        on_start(method)
    if resume_from is None and out_dir is not None and last_checkpoint(out_dir).exists():
        resume_from = last_checkpoint(out_dir)
    state = _resume(cfg, resume_from, method) if resume_from is not None else RunState()
    if distributed is not None:
        method.distribute(distributed)
    writer = None
    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2) + "\n")
        from raygan.engine.tensorboard import RunWriter

        writer = RunWriter(out_dir / TENSORBOARD_DIR, hparams or cfg.to_dict(), purge_step=state.global_step or None)

    train_x, train_y = tensors.train_x, tensors.train_y
    if not method.uses_labelled_anomalies:
        keep = train_y == 0  # semi-supervised baselines never see labelled anomalies
        train_x, train_y = train_x[keep], train_y[keep]
    rank = distributed.rank if distributed is not None else 0
    sampler = AnomalyBatchSampler(train_y, cfg.train.batch_size, seed=cfg.seed, num_replicas=world_size, rank=rank)
    grid = grid_images(tensors)  # host copies: TensorBoard reads them there
    batches = EpochBatches(train_x, train_y, device)
    tensors = place_tensors(tensors, device)
    log_every = cfg.train.log_every

    try:
        for epoch in range(state.epoch, cfg.train.epochs):
            sampler.set_epoch(epoch)
            method.train_mode()
            sums: dict[str, float] = {}
            window = LossWindow()
            images = 0

            def read_window() -> None:
                steps = window.steps
                if not steps:
                    return
                window_sums = window.read(epoch, state.global_step)
                for k, v in window_sums.items():
                    sums[k] = sums.get(k, 0.0) + v
                means = {k: v / steps for k, v in window_sums.items()}
                if writer is not None:
                    writer.losses(means, state.global_step)
                bar.set_postfix(g=f"{means.get('g_loss', 0):.3g}", d=f"{means.get('d_loss', 0):.3g}", refresh=False)

            started = time.perf_counter()
            with _progress(len(sampler), epoch, cfg.train.epochs, progress and is_main) as bar:
                for step, (x, y) in enumerate(batches.epoch(sampler)):
                    terms = method.train_step(x, y)
                    if window.changes(terms):
                        read_window()
                    state.global_step += 1
                    window.add(terms, step)
                    images += len(y)
                    if window.steps >= log_every:
                        read_window()
                    bar.update()
                read_window()  # also waits for the epoch's last kernels: train_seconds is honest
            seconds = time.perf_counter() - started
            record = {
                "epoch": epoch,
                "train_seconds": seconds,
                # every rank trains an equal share of the global batch
                "images_per_s": images * world_size / seconds if seconds > 0 else math.nan,
                "discriminator_resets": method.discriminator_resets,
                **{f"loss_{k}": v / len(sampler) for k, v in sums.items()},
            }
            state.epoch = epoch + 1
            checkpoint = None
            if is_main:
                evaluated, test_scores = _evaluate(method, tensors, cfg, writer, epoch, grid)
                record.update(evaluated)
                state.history.append(record)
                record = {**record, "selected_epoch": select_epoch(state.history, cfg.train.select)["epoch"]}
                if out_dir is not None:
                    checkpoint = last_checkpoint(out_dir)
                    payload = _checkpoint_payload(method, cfg, state, tensors)
                    save_checkpoint(checkpoint, payload)
                    if record["selected_epoch"] == epoch:
                        save_checkpoint(selected_checkpoint(out_dir), payload)
                        save_test_scores(out_dir / TEST_SCORES, test_scores, tensors, epoch)
                    writer.epoch(record, epoch)
                    _write_metrics(out_dir, _result(cfg, method, state, data_info))
            if on_epoch_end is not None:
                on_epoch_end(record, checkpoint)
        if not is_main:
            return {}
        # test images: the same kind for every run of a study, whatever its split
        result = {**_result(cfg, method, state, data_info), **scoring_ms_per_image(method, tensors.test_x)}
        if writer is not None:
            writer.final(result)
            _write_metrics(out_dir, result)
        return result
    finally:
        if writer is not None:
            writer.close()


def save_test_scores(path: Path, scores: torch.Tensor, tensors: SplitTensors, epoch: int) -> None:
    """The selected epoch's per-image test scores, 0/1 targets and original classes: what score
    box plots need (`raygan report --figures`), about 60 KB for a 10,000-image test set."""
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to other names
        np.savez_compressed(tmp, scores=scores.numpy().astype(np.float32), targets=tensors.test_y.numpy().astype(np.int8),
                            classes=tensors.test_classes.numpy().astype(np.int16), epoch=np.int64(epoch))


def _evaluate(method: Method, tensors: SplitTensors, cfg: RunConfig, writer, epoch: int,
              grid) -> tuple[dict, torch.Tensor]:
    bs = cfg.train.eval_batch_size
    val_scores = method.score(tensors.val_x, bs)
    test_scores = method.score(tensors.test_x, bs)
    val = detection_metrics(val_scores, tensors.val_y)
    test = detection_metrics(test_scores, tensors.test_y)
    normal_val = val_scores[tensors.val_y == 0]
    threshold = choose_threshold(val_scores, tensors.val_y)
    record = {
        "auroc_val": val["auroc"],
        "ap_val": val["ap"],
        "val_loss": float(normal_val.mean()) if len(normal_val) else math.nan,
        "auroc_test": test["auroc"],
        "ap_test": test["ap"],
        # The decision threshold of this epoch's detector (`raygan score` reads it from the checkpoint).
        **{f"threshold{'' if key == 'value' else '_' + key}": value for key, value in threshold.items()},
    }
    if writer is not None:
        writer.scores(test_scores, tensors.test_y, epoch)
        for tag, x in grid.items():
            writer.reconstructions(x, method.reconstruct(x), tag, epoch)
    return record, test_scores


def grid_images(tensors: SplitTensors, count: int = GRID_IMAGES) -> dict[str, torch.Tensor]:
    """Up to ``count`` normal and anomalous test images, evenly spaced (the same ones every epoch)."""
    grid = {}
    for label, tag in ((0, "test_normal"), (1, "test_anomalous")):
        idx = torch.nonzero(tensors.test_y == label).flatten()
        if len(idx):
            pick = idx[torch.linspace(0, len(idx) - 1, min(count, len(idx))).long()]
            grid[tag] = tensors.test_x[pick]
    return grid


def _checkpoint_payload(method: Method, cfg: RunConfig, state: RunState, tensors: SplitTensors) -> dict:
    last = state.history[-1]
    return {
        "method": method.state_dict(),
        # What `raygan score` needs to use the detector on new images (raygan.engine.detector).
        "threshold": {"value": last["threshold"], "rule": last["threshold_rule"], "epoch": last["epoch"],
                      "tpr": last["threshold_tpr"], "fpr": last["threshold_fpr"]},
        "preprocessing": {
            "image_size": tensors.image_size,
            "channels": tensors.channels,
            "max_value": tensors.max_value,
            "dataset": cfg.data.dataset,
        },
        "epoch": state.epoch,
        "global_step": state.global_step,
        "history": state.history,
        "config": cfg.to_dict(),
        "torch_rng": torch.get_rng_state(),
    }


def _resume(cfg: RunConfig, path: Path, method: Method) -> RunState:
    saved = load_checkpoint(path)
    # from_dict fills config fields added since the checkpoint was written with their defaults,
    # and resolving fills a method's own defaults into the new null ones (how that run trained).
    saved_config = type(method).resolve(RunConfig.from_dict(saved["config"])).to_dict()
    if saved_config != cfg.to_dict():
        differing = _differences(saved_config, cfg.to_dict())
        raise RayganError(
            f"{path} holds a run with a different configuration ({', '.join(differing[:5])}); "
            f"choose another --out, or delete {path} to start again"
        )
    method.load_state_dict(saved["method"])
    torch.set_rng_state(saved["torch_rng"])
    return RunState(epoch=saved["epoch"], global_step=saved["global_step"], history=saved["history"])


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def _result(cfg: RunConfig, method: Method, state: RunState, data_info: dict) -> dict:
    history = state.history
    selected = select_epoch(history, cfg.train.select)
    last = history[-1]
    speeds = [h["images_per_s"] for h in history if not math.isnan(h["images_per_s"])]
    return {
        "method": cfg.method,
        "dataset": cfg.data.dataset,
        "class_index": cfg.data.class_index,
        "anomaly_fraction": cfg.data.anomaly_fraction,
        "seed": cfg.seed,
        "config_hash": cfg.stable_hash(),
        "epochs": state.epoch,
        "select": cfg.train.select,
        "selected_epoch": selected["epoch"],
        "auroc": selected["auroc_test"],
        "ap": selected["ap_test"],
        "auroc_val": selected["auroc_val"],
        "auroc_last": last["auroc_test"],
        "ap_last": last["ap_test"],
        # The best test epoch peeks at the test set: for comparison with papers that report it only.
        "auroc_best_test_optimistic": max(h["auroc_test"] for h in history),
        "images_per_s": float(np.median(speeds)) if speeds else math.nan,
        "train_seconds": sum(h["train_seconds"] for h in history),
        "discriminator_resets": method.discriminator_resets,
        "params_generator": count_parameters(method.generator),
        "params_discriminator": sum(count_parameters(net) for name, net in method.networks().items() if name != "generator"),
        **({"counts": data_info["counts"]} if data_info else {}),
        "history": history,
    }


def _write_metrics(out_dir: Path, result: dict) -> None:
    write_text(out_dir / METRICS_FILE, json.dumps(result, indent=2) + "\n")
