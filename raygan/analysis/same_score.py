"""One score for every method: each finished trial's validation-selected checkpoint scored by
AGAD's ‖x − G(x)‖₂ (papers/004 §3.3.3) on its own test split.

It separates what a method's training does to its generator from what its own anomaly score adds
(GANomaly scores by latent distance). The AUROCs are kept in ``<study dir>/same_score.json``, keyed
by trial, so a study folder committed without checkpoints still reports them; a trial is scored
once, the first time a report asks for it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from raygan.core.atomic import write_text
from raygan.core.errors import RayganError
from raygan.engine.run_dir import selected_checkpoint
from raygan.store.layout import SAME_SCORE_FILE, trial_dir


def _load(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise RayganError(f"{path} is not JSON; delete it and run the report again (it is rebuilt from checkpoints)") from None


def with_same_score(study_dir: Path, rows: list[dict]) -> list[dict]:
    """``rows`` with ``auroc_reconstruction`` added: read from same_score.json, else computed from
    ``trials/<key>/checkpoints/selected.pt`` and stored there. A finished trial whose checkpoint is
    gone and which is not in the file is left out, with one line saying so."""
    study_dir = Path(study_dir).expanduser().resolve()
    path = study_dir / SAME_SCORE_FILE
    known = _load(path)
    missing = [r for r in rows if r["status"] == "finished" and r["trial_key"] not in known]
    # grouped by split, so that each split is loaded once
    missing.sort(key=lambda r: json.dumps([r.get(k) for k in ("data.dataset", "data.class_index", "data.seed",
                                                              "data.anomaly_fraction", "data.protocol")]))
    if missing:
        import torch

        from raygan.engine.detector import Detector
        from raygan.engine.evaluation import detection_metrics
        from raygan.engine.loop import load_split_tensors
        from raygan.methods.base import reconstruction_l2

        splits: dict[str, object] = {}
        for r in missing:
            checkpoint = selected_checkpoint(trial_dir(study_dir, r["trial_key"]))
            if not checkpoint.exists():
                print(f"raygan: {r['trial_key']}: no {checkpoint.relative_to(study_dir)} and not in {SAME_SCORE_FILE}; "
                      f"left out of the same-score table", file=sys.stderr)
                continue
            detector = Detector.from_checkpoint(checkpoint)
            data_key = json.dumps(detector.method.cfg.data.to_dict(), sort_keys=True)
            if data_key not in splits:  # every method of a class and seed shares the split
                splits.clear()  # one split in memory at a time (rows come sorted by class)
                splits[data_key] = load_split_tensors(detector.method.cfg)[0]
            tensors = splits[data_key]
            with torch.no_grad():
                scores = reconstruction_l2(tensors.test_x, detector.reconstruct(tensors.test_x))
            known[r["trial_key"]] = detection_metrics(scores, tensors.test_y)["auroc"]
            # written after each trial: an interrupt loses nothing
            write_text(path, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return [{**r, "auroc_reconstruction": known.get(r["trial_key"])} for r in rows]
