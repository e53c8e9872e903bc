"""Training mini-batches with a guaranteed share of labelled anomalies, shardable for DDP.

papers/004 §3.3.2: with limited anomalies, every mini-batch holds at least 32 of them so that
their gradient estimate is not too noisy. An epoch is one pass over the normal training images;
each batch takes ``B - m`` normal images and ``m = max(32, round(B·a/(n+a)))`` anomalies, which
cycle through seeded permutations of the (few) labelled anomalies — sampling with replacement
across cycles, without repeats inside a cycle.

For DDP, every rank builds the same global batches (same seed and epoch) and keeps its slice of
each: per-rank batch B/N, normals and anomalies each split as evenly as possible, so the
≥32-anomalies rule holds for the global batch and each worker's share is proportional. The
slices of all ranks are disjoint and together are exactly the global epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from raygan.core.errors import ConfigError
from raygan.data.splitmix import keyed_order
from raygan.data.splits import round_half_up

MIN_ANOMALIES_PER_BATCH = 32  # papers/004 §3.3.2


class AnomalyBatchSampler:
    """Yields LongTensors of positions into the training arrays, one per (rank's) mini-batch."""

    def __init__(
        self,
        targets: np.ndarray | torch.Tensor,
        batch_size: int,
        seed: int = 0,
        min_anomalies: int = MIN_ANOMALIES_PER_BATCH,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        targets = np.asarray(targets)
        self.normals = np.flatnonzero(targets == 0)
        self.anomalies = np.flatnonzero(targets == 1)
        if len(self.normals) == 0:
            raise ConfigError("the training split holds no normal images")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive; got {batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ConfigError(f"rank {rank} is not in 0..{num_replicas - 1}")
        if batch_size % num_replicas:
            raise ConfigError(
                f"batch_size {batch_size} is not divisible by {num_replicas} workers; the global "
                f"batch is split evenly, so choose a multiple of {num_replicas}"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        n, a = len(self.normals), len(self.anomalies)
        if a:
            natural = round_half_up(batch_size * a / (n + a))
            self.anomalies_per_batch = max(min_anomalies, natural)
            if self.anomalies_per_batch >= batch_size:
                raise ConfigError(
                    f"batch_size {batch_size} leaves no room for normal images next to "
                    f"{self.anomalies_per_batch} labelled anomalies per batch (at least "
                    f"{min_anomalies}, papers/004 §3.3.2); use batch_size > {self.anomalies_per_batch}"
                )
        else:
            self.anomalies_per_batch = 0
        self.normals_per_batch = batch_size - self.anomalies_per_batch
        if drop_last:
            self.num_batches = max(1, n // self.normals_per_batch)
        else:
            self.num_batches = -(-n // self.normals_per_batch)

    def set_epoch(self, epoch: int) -> None:
        """Like DistributedSampler.set_epoch: a new shuffle per epoch, identical on every rank."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def global_batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(normal positions, anomaly positions) of every global batch of the current epoch."""
        normals = self.normals[keyed_order(self.seed, f"normals:{self.epoch}", self.normals)]
        m, per = self.anomalies_per_batch, self.normals_per_batch
        anomaly_stream = np.empty(0, dtype=np.int64)
        if m:
            needed = m * self.num_batches
            cycles = -(-needed // len(self.anomalies))
            anomaly_stream = np.concatenate([
                self.anomalies[keyed_order(self.seed, f"anomalies:{self.epoch}:{c}", self.anomalies)]
                for c in range(cycles)
            ])
        batches = []
        for b in range(self.num_batches):
            batches.append((normals[b * per : (b + 1) * per], anomaly_stream[b * m : (b + 1) * m]))
        return batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        for normals, anomalies in self.global_batches():
            mine = [
                np.array_split(normals, self.num_replicas)[self.rank],
                np.array_split(anomalies, self.num_replicas)[self.rank],
            ]
            yield torch.from_numpy(np.concatenate(mine).astype(np.int64))
