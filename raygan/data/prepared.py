"""Data sets prepared once per process and reused by every run it trains (plain PyTorch, no Ray).

A search trial trains one configuration on several instances (data set, class, seed), and a Tune
worker process runs trial after trial: without this, every run decodes its data set's files and
resizes its images again (0.6 CPU-s for Fashion-MNIST). A `PreparedData` keeps, per data set, the
decoded images and every image already converted to model input at the sizes asked for; a run's
split (which images train, validate, test) is then only an index into them. The result is bit for
bit the one a run preparing its own data gets: the conversion is per image.

It is off unless a process turns it on (`keep_prepared_data`): the Tune trial does, a single
`raygan train` has nothing to reuse. Files changed under a running process are not read again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from raygan.core.config import DataConfig
from raygan.data.datasets import ImageDataset, to_model_input
from raygan.data.files import CACHE_ENV, DATA_ENV
from raygan.data.splits import OneClassSplit, SplitTensors, build_split, load_for_config, split_tensors


@dataclass
class _Entry:
    dataset: ImageDataset
    inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # size -> (train, test)


class PreparedData:
    """Decoded data sets and their model inputs, the ``max_datasets`` most recently used."""

    def __init__(self, max_datasets: int = 2) -> None:
        self.max_datasets = max_datasets
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.loads = 0  # data sets decoded (a reuse adds nothing)

    @staticmethod
    def _key(cfg: DataConfig) -> tuple:
        # What decides which files are read: the names and places, and for image folders how.
        shape = (cfg.image_size, cfg.channels) if cfg.dataset == "image_folder" else ()
        return (cfg.dataset, cfg.data_root, cfg.download, *shape, os.environ.get(DATA_ENV), os.environ.get(CACHE_ENV))

    def _entry(self, cfg: DataConfig) -> _Entry:
        key = self._key(cfg)
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(load_for_config(cfg))
            self.loads += 1
            self._entries[key] = entry
            while len(self._entries) > self.max_datasets:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return entry

    def dataset(self, cfg: DataConfig) -> ImageDataset:
        return self._entry(cfg).dataset

    def split(self, cfg: DataConfig) -> tuple[ImageDataset, OneClassSplit, SplitTensors]:
        entry = self._entry(cfg)
        dataset = entry.dataset
        size = cfg.image_size or dataset.image_size
        if size not in entry.inputs:
            entry.inputs[size] = (to_model_input(dataset.train_images, dataset.max_value, size),
                                  to_model_input(dataset.test_images, dataset.max_value, size))
        split = build_split(dataset, cfg)
        return dataset, split, split_tensors(dataset, split, size, inputs=entry.inputs[size])


_PROCESS: PreparedData | None = None


def keep_prepared_data(max_datasets: int = 2) -> PreparedData:
    """Turn on this process's prepared data (idempotent) and return it."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = PreparedData(max_datasets)
    return _PROCESS


def prepared_data() -> PreparedData | None:
    """This process's prepared data, or None where no one turned it on."""
    return _PROCESS


def drop_prepared_data() -> None:
    global _PROCESS
    _PROCESS = None
