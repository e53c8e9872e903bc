"""What a study's trials cost: CPU seconds as a range, or GPU seconds from a measured device profile.

No Ray: `--dry-run` prints these before anything starts.

CPU (the default): a trial is a process on one torch thread, two trials side by side on a 2-core
worker (what a study runs with --cpus-per-trial 1). Its seconds are

    start-up + epochs × (train images / train rate + evaluated images × score time + epoch overhead)

per method and backbone, scaled by (image size / 32)². The rates of AGAD naive and Skip-GANomaly
(UNet) were measured in exactly that setting on real Fashion-MNIST (CPU_MEASURED); the others come
from benchmarks/throughput.py (2 threads, batch 256, one process alone) slowed by the factors those
two measurements showed against their own benchmark rows, the smallest and the largest of them:
hence a range (the two measured kinds get a point). Other jobs on the same cores slow every figure
down: the estimate is for a worker that runs only the study.

GPU (`--device-profile FILE`, written by benchmarks/gpu.py): the profile's trial was timed end to
end, alone and packed K at once. Another trial is that trial's measured seconds scaled by the
throughput rows of its method and backbone, divided by the best packing's gain.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from raygan.core.errors import RayganError

# benchmarks/throughput.py, 2 threads, batch 256, alone (docs/benchmarks.md, Throughput).
BENCH_TRAIN_IMAGES_PER_S = {"naive": 385.1, "unet": 108.9, "unetpp": 48.5, "ganomaly": 518.7, "autoencoder": 1359.1,
                            "skip_ganomaly": 215.8}
BENCH_SCORE_MS_PER_IMAGE = {"naive": 0.226, "unet": 0.936, "unetpp": 2.496, "ganomaly": 0.318, "autoencoder": 0.226,
                            "skip_ganomaly": 1.138}
# Measured per epoch on real Fashion-MNIST (5,400 training normals, 16,000 validation + test images),
# one thread, two trials side by side, batch 64: AGAD naive 56 s training + 21 s scoring; Skip-GANomaly
# (UNet) 92 s training + 76 s scoring.
CPU_MEASURED = {
    "naive": (5400 / 56, 21 / 16000 * 1e3),  # (training images/s, scoring ms/image)
    "skip_ganomaly": (5400 / 92, 76 / 16000 * 1e3),
}
SLOWDOWN_TRAIN = sorted(BENCH_TRAIN_IMAGES_PER_S[k] / CPU_MEASURED[k][0] for k in CPU_MEASURED)
SLOWDOWN_SCORE = sorted(CPU_MEASURED[k][1] / BENCH_SCORE_MS_PER_IMAGE[k] for k in CPU_MEASURED)
# Per trial: Tune's own cost of an in-process trial (1.1 s, benchmarks/tune_overhead.py), loading and
# splitting Fashion-MNIST (0.9 s, docs/benchmarks.md), building the networks and the first steps' oneDNN set-up.
CPU_TRIAL_STARTUP_S = 3.0
# Per epoch besides training and scoring: last.pt and selected.pt (~25 MB each for AGAD naive with
# Adam state), test_scores.npz, TensorBoard grids and histograms, metrics.json.
CPU_EPOCH_OVERHEAD_S = 0.5

# Training images per class and evaluation images (validation + test) per trial, by data set.
APPROX_IMAGES = {
    "digits": (126, 700),
    "mnist": (6000, 16000),
    "fashion_mnist": (6000, 16000),
    "cifar10": (5000, 15000),
    "cifar100": (2500, 15000),
    "image_folder": (2000, 4000),
}


@dataclass(frozen=True)
class TrialShape:
    """What a trial's cost depends on, read from its resolved config."""

    kind: str  # the rate table's key: the backbone, or the method where it has its own row
    row: str  # benchmarks' method:backbone
    epochs: int
    train_images: float  # per epoch
    evaluated_images: float  # per epoch (validation + test)
    scale: float  # (image size / 32)²


def trial_shape(config: dict) -> TrialShape:
    from raygan.core.config import RunConfig
    from raygan.data.datasets import DATASETS
    from raygan.methods import METHODS

    cfg = RunConfig.from_dict(config)
    cfg = METHODS.get(cfg.method).resolve(cfg)
    kind = cfg.method if cfg.method in ("autoencoder", "skip_ganomaly") else cfg.model.backbone
    per_class, evaluated = APPROX_IMAGES.get(cfg.data.dataset, (5000, 15000))
    if cfg.data.protocol == "anomaly_class":
        per_class *= len(DATASETS.get(cfg.data.dataset).class_names) - 1
    # An epoch is one pass over the normals in batches of B − m normals and m labelled anomalies,
    # m ≥ 32 whenever there are any (papers/004 §3.3.2): on a small set such as digits that more
    # than doubles the images trained per epoch (what an estimate of one pass over the normals missed).
    normals = per_class * (1 - cfg.data.val_fraction)
    batch = cfg.train.batch_size
    anomalies = normals * cfg.data.anomaly_fraction / max(1e-9, 1 - cfg.data.anomaly_fraction)
    uses_anomalies = METHODS.get(cfg.method).uses_labelled_anomalies and anomalies > 0
    m = min(batch - 1, max(32, round(batch * anomalies / (normals + anomalies)))) if uses_anomalies else 0
    train_images = max(1, int(normals // (batch - m))) * batch
    scale = ((cfg.data.image_size or 32) / 32) ** 2  # None: the data set's own size (32, or 128 for folders)
    return TrialShape(kind, f"{cfg.method}:{cfg.model.backbone}", cfg.train.epochs, train_images, evaluated, scale)


def cpu_seconds_range(config: dict) -> tuple[float, float]:
    """(low, high) seconds of one trial on one CPU thread, two trials per 2-core worker."""
    s = trial_shape(config)
    bounds = []
    for i in (0, 1):
        if s.kind in CPU_MEASURED:
            rate, score_ms = CPU_MEASURED[s.kind]
        else:
            rate = BENCH_TRAIN_IMAGES_PER_S.get(s.kind, BENCH_TRAIN_IMAGES_PER_S["unet"]) / SLOWDOWN_TRAIN[i]
            score_ms = BENCH_SCORE_MS_PER_IMAGE.get(s.kind, BENCH_SCORE_MS_PER_IMAGE["unet"]) * SLOWDOWN_SCORE[i]
        per_epoch = s.scale * (s.train_images / rate + s.evaluated_images * score_ms / 1000) + CPU_EPOCH_OVERHEAD_S
        bounds.append(CPU_TRIAL_STARTUP_S + s.epochs * per_epoch)
    return bounds[0], bounds[1]


# --- GPU, from a device profile ----------------------------------------------------------------

@dataclass(frozen=True)
class DeviceProfile:
    device: str
    trial_shape: TrialShape
    trial_fixed_s: float  # start-up + data loading of the measured trial
    trial_per_epoch_s: float  # training + evaluation per epoch of the measured trial
    rows: dict[str, dict]  # "method:backbone" -> fp32 throughput row
    best_k: int
    packing_gain: float  # trials/h at the best K over trials/h one at a time
    quick: bool

    @classmethod
    def load(cls, path: Path) -> "DeviceProfile":
        try:
            data = json.loads(Path(path).read_text())
            trial = data["trial"]
            rows = {r["row"]: r for r in data["throughput"] if r["precision"] == "fp32"}
            return cls(
                device=data["device"], trial_shape=trial_shape(trial["config"]),
                trial_fixed_s=trial["startup_s"] + trial["data_s"],
                trial_per_epoch_s=(trial["train_s"] + trial["eval_s"]) / trial["epochs"],
                rows=rows, best_k=data["best_packing"]["k"], packing_gain=data["best_packing"]["speedup_over_one"],
                quick=bool(data.get("quick")),
            )
        except OSError as exc:
            raise RayganError(f"--device-profile {path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise RayganError(f"--device-profile {path} is not a device profile written by benchmarks/gpu.py ({exc!r})") from None

    def seconds_alone(self, config: dict) -> float:
        """One trial alone on the device: the measured trial, scaled per epoch by the work it does."""
        s, ref = trial_shape(config), self.trial_shape
        ref_row = self.rows.get(ref.row)
        row = self.rows.get(s.row, ref_row)
        if ref_row is None or row is None:
            raise RayganError(f"the device profile has no throughput row for {ref.row}")

        def work(shape: TrialShape, r: dict) -> float:  # seconds of pure compute per epoch
            return shape.scale * (shape.train_images / r["train_images_per_s"]
                                  + shape.evaluated_images * r["score_ms_per_image_b256"] / 1000)

        return self.trial_fixed_s + s.epochs * self.trial_per_epoch_s * work(s, row) / work(ref, ref_row)

    def seconds_packed(self, config: dict) -> float:
        """GPU-seconds a trial occupies at the best measured packing."""
        return self.seconds_alone(config) / self.packing_gain


def gpu_estimate(profile: DeviceProfile, configs: list[dict], gpus: int) -> dict:
    gpu_seconds = math.fsum(profile.seconds_packed(c) for c in configs)
    # Trials spread over the GPUs; the study cannot end before its longest trial does.
    wall = max(gpu_seconds / gpus, max((profile.seconds_alone(c) for c in configs), default=0.0))
    return {"gpu_hours": gpu_seconds / 3600, "gpus": gpus, "wall_hours": wall / 3600,
            "trials_per_gpu_at_once": profile.best_k, "device": profile.device}
