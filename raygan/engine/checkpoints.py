"""Checkpoints: both networks, both optimisers, epoch, RNG state, history and the full config.

Everything in a checkpoint is a tensor, a number, a string, or a list/dict of those, so it loads
with ``torch.load(..., weights_only=True)`` (no pickle of arbitrary objects). Writes are atomic
(temporary file, then rename), so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path

import torch

from raygan.core.atomic import atomic_path
from raygan.core.errors import RayganError

FORMAT_VERSION = 1
LAST = "last.pt"
SELECTED = "selected.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT_VERSION, **state}, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise RayganError(
            f"cannot load checkpoint {path}: {exc}. The file is damaged; delete it to start the run afresh."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise RayganError(f"{path} is not a raygan checkpoint (format {FORMAT_VERSION})")
    return state
