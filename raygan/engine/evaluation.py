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


# Without validation anomalies, the threshold flags this fraction of validation normals.
FALLBACK_FALSE_POSITIVE_RATE = 0.05


def choose_threshold(scores: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> dict:
    """The decision threshold of a detector, from its validation scores: anomalous iff score >= value.

    Rule ``youden_j``: the threshold maximising Youden's J = TPR − FPR over the validation split.
    J does not depend on the split's class mix, which in the one-class protocols is the data set's
    (Fashion-MNIST validation: 1 normal to 9 anomalous), not the deployment's, so F1 would favour
    flagging. Ties go to the highest threshold (fewest false alarms). Without validation anomalies
    (rule ``normal_quantile``) the threshold is the 95th percentile of the validation normals' scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if len(np.unique(targets)) == 2:
        from sklearn.metrics import roc_curve

        fpr, tpr, thresholds = roc_curve(targets, scores)
        finite = np.isfinite(thresholds)  # the first threshold is +inf (nothing flagged)
        j = np.where(finite, tpr - fpr, -np.inf)
        best = int(np.argmax(j))  # thresholds decrease: argmax takes the highest among ties
        return {"value": float(thresholds[best]), "rule": "youden_j",
                "tpr": float(tpr[best]), "fpr": float(fpr[best])}
    normal = scores[targets == 0] if (targets == 0).any() else scores
    value = float(np.quantile(normal, 1 - FALLBACK_FALSE_POSITIVE_RATE))
    return {"value": value, "rule": "normal_quantile", "tpr": math.nan,
            "fpr": float((normal >= value).mean())}
