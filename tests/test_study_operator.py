"""A study as an operator sees it, run for real on the session's local Ray: what finished trials
keep on disk (--keep-checkpoints), the resume summary after a kill -9 of the driver, progress lines,
and what a DDP study leaves alive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def tiny_plan(name: str = "keep_probe", epochs: int = 2, lrs=(0.001,)):
    """Autoencoder trials on digits, one per learning rate: seconds each."""
    from raygan.study import Factor, Profile, Study, expand, study_hash
    from raygan.tuning import Plan

    study = Study(
        name=name, reproduces="test", caption="",
        base={"method": "autoencoder", "model": {"backbone": "naive", "latent_size": 8}},
        factors=(Factor("lr", tuple(lrs), key="train.lr"),),
        profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (0,)}, seeds=(0,), epochs=epochs,
                                   overrides={"train": {"batch_size": 32}})},
    )
    trials = expand(study, study.profile("smoke"))
    return Plan(study, "smoke", study_hash(study, "smoke", trials, None), trials=tuple(trials), epochs=epochs)


@pytest.mark.parametrize("keep,kept", [("selected", {"selected.pt"}), ("none", set())])
def test_a_finished_trial_keeps_what_keep_checkpoints_says(ray_cluster, tmp_path, keep, kept):
    from raygan.report import best_trial
    from raygan.results import write_results
    from raygan.tuning import RunOptions, run_plan

    study_dir = run_plan(tiny_plan(), RunOptions(storage=tmp_path, keep_checkpoints=keep))
    write_results(study_dir)
    (record,) = [json.loads(p.read_text()) for p in (study_dir / "rows").glob("*.json")]
    assert record["status"] == "finished" and len(record["history"]) == 2
    run_dir = study_dir / "trials" / record["trial_key"]
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == kept
    assert (run_dir / "test_scores.npz").exists() and (run_dir / "metrics.json").exists()  # box plots, tables
    best = best_trial(study_dir)
    assert best["checkpoint"] == (str(run_dir / "checkpoints" / "selected.pt") if kept else None)
