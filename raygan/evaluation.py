"""Anomaly-detection metrics from continuous scores (higher score = more anomalous)."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score


def detection_metrics(scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> dict[str, float]:
    """AUROC and average precision with anomalies (target 1) as the positive class.

    Undefined metrics (a split with one class only) are NaN rather than an exception, so a
    validation split without anomalies can still select by `val_loss`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if not np.all(np.isfinite(scores)):
        raise ValueError("anomaly scores contain NaN or infinity")
    if len(np.unique(targets)) < 2:
        return {"auroc": math.nan, "ap": math.nan}
    return {
        "auroc": float(roc_auc_score(targets, scores)),
        "ap": float(average_precision_score(targets, scores)),
    }
