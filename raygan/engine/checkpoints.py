"""Checkpoints: both networks, both optimisers, epoch, RNG state, history and the full config.

Everything in a checkpoint is a tensor, a number, a string, or a list/dict of those, so it loads
with ``torch.load(..., weights_only=True)`` (no pickle of arbitrary objects). Writes are atomic
(temporary file, then rename), so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from raygan.core.atomic import atomic_path
from raygan.core.errors import RayganError, first_line

FORMAT_VERSION = 1
LAST = "last.pt"
SELECTED = "selected.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT_VERSION, **state}, tmp)


def load_checkpoint(path: Path) -> dict:
    try:
        with warnings.catch_warnings():  # torch warns about pickle opcodes of files that are refused anyway
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text advises weights_only=False, i.e. running whatever code the file holds:
        # wrong for a file nobody vouches for. weights_only held; nothing in it ran.
        raise RayganError(
            f"{path} is not a raygan checkpoint: it holds objects other than tensors, numbers and strings, "
            f"and is not loaded (nothing in it was run); use a run's checkpoints/selected.pt or last.pt"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise RayganError(
            f"{path} is not a raygan checkpoint, or it is damaged ({type(exc).__name__}: {first_line(exc)[:200]}); "
            f"delete it to start the run afresh"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise RayganError(f"{path} is not a raygan checkpoint (format {FORMAT_VERSION})")
    return state
