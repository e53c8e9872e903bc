"""One-class splits: which images train, validate and test a detector, and which are anomalous.

Protocols (papers/004 §4.2; GANomaly, papers/002):
- ``normal_class``: class k is normal, every other class anomalous (AGAD, Deep SAD).
- ``anomaly_class``: class k is anomalous, every other class normal (GANomaly).

From the official training set, ``val_fraction`` of every class is held out for model selection
(normal images of the normal classes plus images of the anomalous classes; they never enter
training). From the rest, the normal classes' images train, and γ = a/(n+a) labelled anomalies
(papers/004 §4.2.2) are drawn by seed from the anomalous classes' remaining images, or from one
named class as in Deep SAD. The test set is the official test set, all classes, labelled by the
protocol. All draws use `keyed_order`, so the same arguments give the same indices on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from raygan.core.config import DataConfig
from raygan.core.errors import ConfigError
from raygan.data.datasets import ImageDataset, load_dataset, to_model_input
from raygan.data.splitmix import keyed_order

NORMAL, ANOMALOUS = 0, 1


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def labelled_anomaly_count(n_normal: int, gamma: float) -> int:
    """a such that a/(n+a) is closest to γ (papers/004 §4.2.2)."""
    return round_half_up(gamma * n_normal / (1.0 - gamma)) if gamma > 0 else 0


@dataclass
class Part:
    """Indices into the official train or test arrays, with 0/1 targets and original classes."""

    indices: np.ndarray
    targets: np.ndarray  # 0 normal, 1 anomalous
    classes: np.ndarray

    def counts(self) -> dict[str, int]:
        return {"normal": int((self.targets == NORMAL).sum()), "anomalous": int((self.targets == ANOMALOUS).sum())}


@dataclass
class OneClassSplit:
    config: DataConfig
    normal_classes: list[int]
    anomalous_classes: list[int]
    train: Part  # indices into dataset.train_*
    val: Part  # indices into dataset.train_*
    test: Part  # indices into dataset.test_*

    def counts(self) -> dict[str, dict[str, int]]:
        return {"train": self.train.counts(), "val": self.val.counts(), "test": self.test.counts()}


def build_split(dataset: ImageDataset, cfg: DataConfig) -> OneClassSplit:
    k = cfg.class_index
    all_classes = list(range(dataset.num_classes))
    if k not in all_classes:
        raise ConfigError(
            f"data.class_index {k} is not a class of {dataset.name}; valid: 0..{dataset.num_classes - 1} "
            f"({', '.join(f'{i}={n}' for i, n in enumerate(dataset.class_names))})"
        )
    if cfg.protocol == "normal_class":
        normal_classes, anomalous_classes = [k], [c for c in all_classes if c != k]
    else:
        normal_classes, anomalous_classes = [c for c in all_classes if c != k], [k]
    if cfg.anomaly_source == "all":
        source_classes = anomalous_classes
    else:
        source = int(cfg.anomaly_source)
        if source not in anomalous_classes:
            raise ConfigError(
                f"data.anomaly_source {source} is not an anomalous class under protocol "
                f"{cfg.protocol} with class {k}; choose one of {anomalous_classes} or 'all'"
            )
        source_classes = [source]

    labels = dataset.train_labels
    val_idx, remaining = [], {}
    for c in all_classes:
        idx = np.flatnonzero(labels == c)
        idx = idx[keyed_order(cfg.seed, f"val:{c}", idx)]
        n_val = round_half_up(cfg.val_fraction * len(idx))
        if n_val >= len(idx) and c in normal_classes:
            raise ConfigError(
                f"data.val_fraction {cfg.val_fraction} leaves no training images of class {c} "
                f"({len(idx)} images)"
            )
        val_idx.append(idx[:n_val])
        remaining[c] = idx[n_val:]

    train_normal = np.concatenate([remaining[c] for c in normal_classes])
    n = len(train_normal)
    a = labelled_anomaly_count(n, cfg.anomaly_fraction)
    pool = np.concatenate([remaining[c] for c in source_classes])
    if cfg.anomaly_fraction > 0 and a == 0:
        raise ConfigError(
            f"data.anomaly_fraction {cfg.anomaly_fraction} gives 0 labelled anomalies for {n} normal "
            f"training images; use a larger gamma or 0"
        )
    if a > len(pool):
        raise ConfigError(
            f"data.anomaly_fraction {cfg.anomaly_fraction} needs {a} labelled anomalies but classes "
            f"{source_classes} have only {len(pool)} training images outside validation"
        )
    train_anomalies = pool[keyed_order(cfg.seed, "labelled-anomalies", pool)[:a]]

    def part(indices: np.ndarray, class_labels: np.ndarray) -> Part:
        indices = np.sort(indices)
        classes = class_labels[indices]
        targets = np.isin(classes, anomalous_classes).astype(np.int64)
        return Part(indices, targets, classes)

    return OneClassSplit(
        config=cfg,
        normal_classes=normal_classes,
        anomalous_classes=anomalous_classes,
        train=part(np.concatenate([train_normal, train_anomalies]), labels),
        val=part(np.concatenate(val_idx), labels),
        test=part(np.arange(len(dataset.test_labels)), dataset.test_labels),
    )


def load_for_config(cfg: DataConfig) -> ImageDataset:
    """Load the data set a DataConfig names (image size and channels matter only for image folders)."""
    options = {}
    if cfg.dataset == "image_folder":
        options = {"image_size": cfg.image_size, "channels": cfg.channels}
    dataset = load_dataset(cfg.dataset, data_root=cfg.data_root, download=cfg.download, **options)
    if cfg.channels is not None and cfg.channels != dataset.channels:
        raise ConfigError(
            f"data.channels {cfg.channels} does not match {dataset.name}, which has {dataset.channels}"
        )
    return dataset


@dataclass
class SplitTensors:
    """A split as model-ready tensors in [-1, 1], held in memory (no per-sample work in training)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_classes: torch.Tensor
    image_size: int
    channels: int
    max_value: int = 255  # the stored pixel value that maps to +1 (digits: 16)


def split_tensors(dataset: ImageDataset, split: OneClassSplit, image_size: int | None = None,
                  inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> SplitTensors:
    """``inputs``: every train and test image already converted at ``image_size`` (a process's
    prepared data); the split's images are then picked from them instead of converted again."""
    size = image_size or dataset.image_size

    def convert(images: np.ndarray, part: Part, converted: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if converted is not None:  # a copy: a run may change its tensors, never the shared ones
            return converted[torch.from_numpy(part.indices)], torch.from_numpy(part.targets)
        return to_model_input(images[part.indices], dataset.max_value, size), torch.from_numpy(part.targets)

    train_all, test_all = inputs if inputs is not None else (None, None)
    train_x, train_y = convert(dataset.train_images, split.train, train_all)
    val_x, val_y = convert(dataset.train_images, split.val, train_all)
    test_x, test_y = convert(dataset.test_images, split.test, test_all)
    return SplitTensors(
        train_x, train_y, val_x, val_y, test_x, test_y,
        torch.from_numpy(split.test.classes), size, dataset.channels, dataset.max_value,
    )

