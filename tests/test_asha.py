"""ASHA's rungs after --resume (raygan.tune.asha): Ray restores a search's searcher but not its
scheduler, so raygan fills the rungs again from the study's records. Ray's real ASHAScheduler
decides here, without a cluster: a new trial that scores below the recorded ones at a milestone
is stopped, as it would have been had the search not been interrupted."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")

from ray.tune.schedulers import ASHAScheduler, TrialScheduler  # noqa: E402

from raygan.store.records import scan_records, write_record  # noqa: E402
from raygan.tune.asha import RungsFromRecords, fill_rungs  # noqa: E402
from raygan.tune.context import DriverContext, TrialSetup, driving  # noqa: E402

SETTINGS = dict(time_attr="epochs_done", metric="run_auroc_val", mode="max", max_t=5, grace_period=1,
                reduction_factor=2)


def record(trial_id: str, aurocs: list[float], study_hash: str = "h") -> dict:
    return {"study": "hpo", "study_hash": study_hash, "profile": "cpu", "trial_key": f"trial-{trial_id}",
            "trial_id": trial_id, "status": "finished", "error": None, "factors": {},
            "config": {"train": {"select": "val_auroc"}}, "metrics": {},
            "history": [{"epoch": e, "auroc_val": a} for e, a in enumerate(aurocs)], "recorded_at": 0.0}


def driver(study_dir) -> DriverContext:
    """The driver running now, as the scheduler sees it: this study directory, hash h."""
    return DriverContext(study_dir=study_dir, study_hash="h", plan_info={}, setup=TrialSetup("search", str(study_dir)))


def decide(scheduler, trial_id: str, epochs_done: int, value: float) -> str:
    trial = SimpleNamespace(trial_id=trial_id)
    if trial_id not in scheduler._trial_info:
        scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {"epochs_done": epochs_done, "run_auroc_val": value})


@pytest.fixture
def study_dir(tmp_path):
    (tmp_path / "rows").mkdir()
    # three ended trials; the third stopped after 2 epochs. Selected-so-far values at the
    # milestones 1, 2, 4: a .70/.75/.76, b .76/.76/.76, c .74/.80/-
    for r in (record("a", [0.70, 0.75, 0.72, 0.76, 0.71]), record("b", [0.76, 0.72, 0.70, 0.73, 0.74]),
              record("c", [0.74, 0.80]), record("x", [0.99, 0.99, 0.99, 0.99, 0.99], study_hash="other")):
        write_record(tmp_path, r)
    with driving(driver(tmp_path)):
        yield tmp_path


def test_the_rungs_hold_what_each_recorded_trial_reported_at_each_milestone(study_dir):
    scheduler = RungsFromRecords(**SETTINGS)
    added = fill_rungs(scheduler, [r for r in scan_records(study_dir)[0] if r["study_hash"] == "h"])
    rungs = {milestone: recorded for milestone, recorded in scheduler._brackets[0]._rungs}
    assert added == 8 and sorted(rungs) == [1, 2, 4]
    assert rungs[1] == {"a": 0.70, "b": 0.76, "c": 0.74}
    assert rungs[2] == {"a": 0.75, "b": 0.76, "c": 0.80}
    assert rungs[4] == {"a": 0.76, "b": 0.76}  # c stopped at 2 epochs; x is another study's


def test_a_restored_search_stops_a_trial_that_scores_below_the_recorded_ones(study_dir):
    """At milestone 1 the cutoff (reduction factor 2: the median of .70 .74 .76) is .74: a new
    trial at .72 is stopped by the restored raygan scheduler, one at .75 goes on. Ray's own ASHA,
    restored with empty rungs, lets the .72 one go on: what happened in the hpo cpu run."""
    created = RungsFromRecords(**SETTINGS)
    restored = pickle.loads(pickle.dumps(created))  # as Tuner.restore brings it back
    assert decide(restored, "new-low", 1, 0.72) == TrialScheduler.STOP
    assert decide(restored, "new-high", 1, 0.75) == TrialScheduler.CONTINUE
    plain = pickle.loads(pickle.dumps(ASHAScheduler(**SETTINGS)))
    assert decide(plain, "new-low", 1, 0.72) == TrialScheduler.CONTINUE


def test_a_new_search_has_nothing_to_fill(tmp_path):
    with driving(driver(tmp_path)):
        scheduler = RungsFromRecords(**SETTINGS)
        assert decide(scheduler, "first", 1, 0.1) == TrialScheduler.CONTINUE  # nothing to compare with yet
        assert {m: dict(r) for m, r in scheduler._brackets[0]._rungs} == {4: {}, 2: {}, 1: {"first": 0.1}}
