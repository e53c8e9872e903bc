"""A run directory's layout: the one place its file names are written.

The epoch loop writes a run directory (``raygan train --out DIR``, or a study's
``trials/<key>/``); everything that reads one (the Tune trainable, the trial records, the figures,
the same-score table, ``raygan study best``) names its files through this module.
"""

from __future__ import annotations

from pathlib import Path

from raygan.engine.checkpoints import LAST, SELECTED

CONFIG_FILE = "config.json"  # the resolved configuration (the method's paper defaults filled in)
METRICS_FILE = "metrics.json"  # the run so far: summary and per-epoch history, rewritten each epoch
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
TEST_SCORES = "test_scores.npz"  # the test scores of the selected epoch, beside checkpoints/selected.pt
RAY_DIR = "ray"  # a Ray Train DDP trainer's own run (its checkpoints), when one trained the run


def last_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run resumes from."""
    return Path(run_dir) / CHECKPOINTS_DIR / LAST


def selected_checkpoint(run_dir: Path) -> Path:
    """The validation-selected checkpoint: the run's detector."""
    return Path(run_dir) / CHECKPOINTS_DIR / SELECTED


def ray_checkpoints(run_dir: Path) -> list[Path]:
    """The DDP trainer's checkpoint directories (each holds a last.pt)."""
    return sorted((Path(run_dir) / RAY_DIR).glob("*/checkpoint_*"))


# What every per-epoch report of a run carries besides the epoch record (a Tune trial's, and a DDP
# trainer's rank 0): the run so far at its validation-selected epoch, read from metrics.json.
RUN_SUMMARY = ("auroc", "ap", "auroc_val", "auroc_last", "selected_epoch", "epochs", "images_per_s",
               "train_seconds", "params_generator", "discriminator_resets")


def run_summary(metrics: dict) -> dict:
    """``metrics`` (metrics.json) as ``run_<key>`` report entries."""
    return {f"run_{k}": metrics[k] for k in RUN_SUMMARY if k in metrics}


def scalars(record: dict) -> dict:
    """The entries of ``record`` that Tune and Ray Train accept as metrics (numbers, text, flags)."""
    return {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool))}
