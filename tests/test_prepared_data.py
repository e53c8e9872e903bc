"""A process's prepared data (raygan.data.prepared): a data set is decoded and converted once, and
every run's split picked from it is bit for bit what the run would have prepared itself."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from raygan.core.config import DataConfig, RunConfig
from raygan.data import build_split, load_for_config, split_tensors
from raygan.data.prepared import PreparedData, drop_prepared_data, keep_prepared_data, prepared_data
from raygan.engine.loop import load_split_tensors


def own(cfg: DataConfig):
    dataset = load_for_config(cfg)
    return split_tensors(dataset, build_split(dataset, cfg), cfg.image_size)


# digits are 8x8: model input at 32 and 64 is a bilinear resize, the costly part of preparing data
@pytest.mark.parametrize("changes", [
    {"class_index": 3, "seed": 0},
    {"class_index": 7, "seed": 2, "anomaly_fraction": 0.1},
    {"class_index": 3, "seed": 1, "protocol": "anomaly_class", "image_size": 64},
])
def test_a_prepared_split_is_bit_for_bit_the_one_a_run_prepares_itself(changes):
    cfg = DataConfig(dataset="digits", **changes)
    prepared = PreparedData()
    _, _, mine = prepared.split(DataConfig(dataset="digits", class_index=0))  # an earlier instance
    _, _, kept = prepared.split(cfg)
    expected = own(cfg)
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "test_classes"):
        assert torch.equal(getattr(kept, name), getattr(expected, name)), name
    assert (kept.image_size, kept.channels, kept.max_value) == (expected.image_size, expected.channels, expected.max_value)
    assert prepared.loads == 1  # one decode for both instances
    kept.train_x.add_(1.0)  # a run that changes its tensors leaves the next run's data alone
    _, _, again = prepared.split(cfg)
    assert torch.equal(again.train_x, expected.train_x)


def test_data_sets_beyond_the_limit_are_dropped_least_recently_used_first():
    prepared = PreparedData(max_datasets=1)
    prepared.split(DataConfig(dataset="digits"))
    prepared.split(DataConfig(dataset="digits", class_index=4))
    prepared.split(DataConfig(dataset="digits", val_fraction=0.2, download=False))  # another key
    prepared.split(DataConfig(dataset="digits"))
    assert prepared.loads == 3


def test_a_run_uses_the_processs_prepared_data_only_where_it_is_turned_on():
    cfg = RunConfig.from_dict({"method": "autoencoder", "data": {"dataset": "digits", "class_index": 5}})
    drop_prepared_data()
    try:
        assert prepared_data() is None
        plain, info = load_split_tensors(cfg)
        kept = keep_prepared_data()
        assert keep_prepared_data() is kept
        first, first_info = load_split_tensors(cfg)
        second, _ = load_split_tensors(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=1)))
        assert kept.loads == 1 and first_info == info and torch.equal(first.val_x, plain.val_x)
        assert kept.loads == 1 and not torch.equal(second.val_x, first.val_x)  # another seed, another split
    finally:
        drop_prepared_data()
