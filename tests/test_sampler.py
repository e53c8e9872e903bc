"""The batch sampler: ≥32 anomalies per batch when γ > 0, disjoint shards that cover the epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raygan.core.errors import ConfigError
from raygan.data import AnomalyBatchSampler


def targets(n_normal: int, n_anomalous: int) -> np.ndarray:
    t = np.array([0] * n_normal + [1] * n_anomalous)
    return t[np.argsort(np.arange(len(t)) * 7919 % len(t))]  # interleave deterministically


@pytest.mark.parametrize("n_anomalous", [1, 5, 54, 300, 1350])
def test_every_batch_holds_at_least_32_anomalies(n_anomalous):
    t = targets(5400, n_anomalous)
    sampler = AnomalyBatchSampler(t, batch_size=256, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == 256
        assert int((t[batch.numpy()] == 1).sum()) >= 32


def test_proportional_share_above_the_minimum():
    t = targets(5400, 1350)  # γ = 0.2 -> 51 of 256
    sampler = AnomalyBatchSampler(t, batch_size=256)
    assert sampler.anomalies_per_batch == 51
    assert all(int((t[b.numpy()] == 1).sum()) == 51 for b in sampler)


def test_normals_once_per_epoch_and_anomalies_cycle_without_repeats_inside_a_cycle():
    t = targets(1000, 10)
    sampler = AnomalyBatchSampler(t, batch_size=100, drop_last=False)
    seen = np.concatenate([b.numpy() for b in sampler])
    normals = seen[t[seen] == 0]
    assert sorted(normals) == sorted(np.flatnonzero(t == 0))  # each normal exactly once
    anomalies = seen[t[seen] == 1]
    assert len(anomalies) == 32 * len(sampler)  # drawn with replacement, the pool is tiny
    for start in range(0, len(anomalies) - 10, 10):  # each cycle of 10 is a permutation
        assert sorted(anomalies[start : start + 10]) == sorted(np.flatnonzero(t == 1))


def test_no_anomalies_gives_plain_shuffled_batches():
    t = np.zeros(1000, dtype=int)
    sampler = AnomalyBatchSampler(t, batch_size=64, drop_last=True)
    batches = list(sampler)
    assert len(batches) == 1000 // 64 and all(len(b) == 64 for b in batches)
    flat = torch.cat(batches).numpy()
    assert len(set(flat)) == len(flat)


def test_epochs_shuffle_differently_and_reproducibly():
    t = targets(500, 20)
    a = AnomalyBatchSampler(t, batch_size=64, seed=3)
    b = AnomalyBatchSampler(t, batch_size=64, seed=3)
    first = [x.tolist() for x in a]
    assert first == [x.tolist() for x in b]
    a.set_epoch(1)
    assert first != [x.tolist() for x in a]


@pytest.mark.parametrize("world", [2, 4])
def test_shards_are_disjoint_proportional_and_cover_the_global_epoch(world):
    t = targets(2000, 40)
    full = AnomalyBatchSampler(t, batch_size=128, seed=1)
    shards = [AnomalyBatchSampler(t, batch_size=128, seed=1, num_replicas=world, rank=r) for r in range(world)]
    for s in [full, *shards]:
        s.set_epoch(2)
    global_batches = list(full)
    per_rank = [list(s) for s in shards]
    assert all(len(p) == len(global_batches) for p in per_rank)
    for step, batch in enumerate(global_batches):
        parts = [p[step].numpy() for p in per_rank]
        merged = np.concatenate(parts)
        assert sorted(merged) == sorted(batch.numpy())  # together exactly the global batch
        normal_parts = [set(x[t[x] == 0]) for x in parts]
        for i in range(world):
            for j in range(i + 1, world):
                assert not normal_parts[i] & normal_parts[j]
        anomaly_counts = [int((t[x] == 1).sum()) for x in parts]
        assert sum(anomaly_counts) >= 32 and max(anomaly_counts) - min(anomaly_counts) <= 1
        assert all(len(x) == 128 // world for x in parts)


def test_bad_batch_sizes_are_explained():
    t = targets(100, 10)
    with pytest.raises(ConfigError, match="batch_size 32 leaves no room"):
        AnomalyBatchSampler(t, batch_size=32)
    with pytest.raises(ConfigError, match="not divisible by 3 workers"):
        AnomalyBatchSampler(t, batch_size=64, num_replicas=3)
