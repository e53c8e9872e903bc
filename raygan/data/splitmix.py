"""Machine-independent seeded orderings.

Splits must give the same indices on any machine and any NumPy/PyTorch version, and NumPy does
not promise a stable stream for its Generator methods across versions. Sorting by a splitmix64
hash of (seed, purpose, index) is pure integer arithmetic, so it is stable everywhere.
"""

from __future__ import annotations

import hashlib

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _salt(seed: int, purpose: str) -> np.uint64:
    digest = hashlib.blake2b(f"{seed}:{purpose}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def keys(seed: int, purpose: str, values: np.ndarray) -> np.ndarray:
    """A pseudo-random uint64 key per value, determined by (seed, purpose, value) only."""
    with np.errstate(over="ignore"):
        return _splitmix64(np.asarray(values, dtype=np.uint64) ^ _salt(seed, purpose))


def keyed_order(seed: int, purpose: str, values: np.ndarray) -> np.ndarray:
    """Positions that sort ``values`` into a seeded pseudo-random order (a permutation)."""
    return np.argsort(keys(seed, purpose, values), kind="stable")
