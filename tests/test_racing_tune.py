"""Racing in real Ray Tune and a real Optuna study, on the synthetic objective of
benchmarks/racing.py (known mean per configuration, shared instance difficulty, seed noise): racing
keeps the best configuration and stops the clearly worse ones at the minimum number of instances;
the Optuna study holds one intermediate value per completed instance at step = instance index; a
restored scheduler fills its race from the study's records."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")
optuna = pytest.importorskip("optuna")

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from raygan.store.records import write_record  # noqa: E402
from raygan.study.racing import RacingRule  # noqa: E402
from raygan.tune.context import DriverContext, TrialSetup, driving  # noqa: E402
from raygan.tune.racing import (  # noqa: E402
    INSTANCE, INSTANCE_VALUE, INSTANCES_DONE, MEAN_VALUE, InstanceOptunaSearch, RacingScheduler, driver_records,
)

ROOT = Path(__file__).resolve().parents[1]
RULE = RacingRule(test="t", p_value=0.1, min_instances=3)


def _benchmark():
    spec = importlib.util.spec_from_file_location("racing_benchmark", ROOT / "benchmarks" / "racing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(module)  # Tune's workers cannot import it by name
    return module


bench = _benchmark()
# Means 5 points apart, seed noise 0.5 points: a worse configuration is worse on every instance.
OBJECTIVE = bench.SyntheticObjective(means=(0.70, 0.85, 0.75, 0.90, 0.80, 0.60), instances=6,
                                     difficulty_sd=0.05, noise_sd=0.005, seed=3)


def expected_instances(order: list[int]) -> dict[int, int]:
    """Run one at a time, a configuration runs every instance iff it beats all before it."""
    best, out = -1.0, {}
    for config in order:
        mean = OBJECTIVE.means[config]
        out[config] = OBJECTIVE.instances if mean > best else RULE.min_instances
        best = max(best, mean)
    return out


def test_racing_in_tune_keeps_the_best_and_stops_the_worse_at_three_instances(ray_cluster, tmp_path):
    order = [0, 1, 2, 3, 4, 5]
    results, values = bench.run_search(OBJECTIVE, order, tmp_path, scheduler=RacingScheduler(RULE, records=None))
    done = {int(r.metrics["config_id"]): r.metrics[INSTANCES_DONE] for r in results}
    assert done == expected_instances(order) == {0: 6, 1: 6, 2: 3, 3: 6, 4: 3, 5: 3}
    found = bench.outcome(values)
    assert found.winner == OBJECTIVE.best == 3 and found.instance_runs == 27  # of 36
    for config, values in found.values.items():  # what Tune saw is the objective's truth
        assert values == {i: pytest.approx(OBJECTIVE.value(config, i)) for i in range(done[config])}


def space(trial) -> None:
    trial.suggest_categorical("config_id", list(range(len(OBJECTIVE.means))))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # BruteForceSampler
def test_racing_with_optuna_keeps_one_intermediate_value_per_completed_instance(ray_cluster, tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    searcher = InstanceOptunaSearch(space=space, metric=MEAN_VALUE, mode="max", storage=storage,
                                    study_name="racing", sampler=optuna.samplers.BruteForceSampler(seed=0))
    results, _ = bench.run_search(OBJECTIVE, list(range(6)), tmp_path, scheduler=RacingScheduler(RULE, records=None),
                               search_alg=searcher)
    assert not results.errors
    study = optuna.load_study(study_name="racing", storage=storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    order = [t.params["config_id"] for t in trials]
    assert sorted(order) == list(range(6))  # every configuration once, in the sampler's order
    expected = expected_instances(order)
    for trial in trials:
        config = trial.params["config_id"]
        values = {i: OBJECTIVE.value(config, i) for i in range(expected[config])}
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.intermediate_values == pytest.approx(values)  # step = instance index
        assert trial.value == pytest.approx(sum(values.values()) / len(values))  # the mean over those completed
    assert study.best_trial.params["config_id"] == OBJECTIVE.best
    tune_done = {int(r.metrics["config_id"]): r.metrics[INSTANCES_DONE] for r in results}
    assert tune_done == expected


def record(trial_id: str, values: list[float]) -> dict:
    return {"study": "search", "study_hash": "h", "profile": "smoke", "trial_key": f"trial-{trial_id}",
            "trial_id": trial_id, "status": "finished", "error": None, "factors": {}, "config": {}, "metrics": {},
            "instances": [{"instance": i, "auroc_val": v, "auroc": v - 0.01} for i, v in enumerate(values)],
            "recorded_at": 0.0}


def decide(scheduler, trial_id: str, instance: int, value: float) -> str:
    trial = SimpleNamespace(trial_id=trial_id)
    if instance == 0:
        scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {INSTANCE: instance, INSTANCE_VALUE: value,
                                                   INSTANCES_DONE: instance + 1})


def test_a_restored_scheduler_races_new_trials_against_the_recorded_incumbent(tmp_path):
    """Tune brings the scheduler back as it was pickled when the search began (an empty race);
    it fills the race from the study's records before the first trial, so a trial that is clearly
    worse than the recorded incumbent is still stopped at its third instance."""
    (tmp_path / "rows").mkdir()
    write_record(tmp_path, record("inc", [0.90, 0.70, 0.80, 0.85]))
    write_record(tmp_path, {**record("other", [0.99] * 4), "study_hash": "another search"})
    context = DriverContext(study_dir=tmp_path, study_hash="h", plan_info={}, setup=TrialSetup("search", str(tmp_path)))
    restored = pickle.loads(pickle.dumps(RacingScheduler(RULE, records=driver_records)))
    worse = [0.84, 0.66, 0.74]
    with driving(context):  # the scheduler reads the driver running now, not its pickled state
        decisions = [decide(restored, "new", i, v) for i, v in enumerate(worse)]
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert restored.race.incumbent() == "inc" and restored.race.values("inc") == {0: 0.90, 1: 0.70, 2: 0.80, 3: 0.85}
    assert restored.rejected["new"].shared == (0, 1, 2)
    empty = pickle.loads(pickle.dumps(RacingScheduler(RULE, records=None)))  # without the records
    assert [decide(empty, "new", i, v) for i, v in enumerate(worse)] == [TrialScheduler.CONTINUE] * 3


def test_a_search_over_instances_keeps_every_instance_value_in_its_records_and_optuna_study(ray_cluster, tmp_path):
    """A real search on digits: each trial trains its configuration on 3 instances (3 classes) in
    the search's order, one report per instance; the record holds every instance's
    validation and test AUROC, the objective is their mean, and Optuna holds one intermediate value
    per completed instance at step = instance index."""
    from raygan.study import Profile, Study, search_instances, study_hash
    from raygan.study.spaces import SEARCH_SPACES
    from raygan.store.layout import INSTANCES_FILE, instance_dir, trial_dir
    from raygan.store.optuna_db import default_url, optuna_study_name
    from raygan.store.records import records_with_hash
    from raygan.tune.driver import run_plan
    from raygan.tune.plan import Plan, RunOptions

    study = Study(name="instances", reproduces="test", caption="", base={"method": "autoencoder"},
                  search_space=SEARCH_SPACES.get("autoencoder"),
                  profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (1, 3, 5)}, seeds=(0,), epochs=1,
                                             samples=2, overrides={"train": {"batch_size": 64, "threads": 1}})})
    instances = search_instances(study, study.profile("smoke"))
    plan = Plan(study, "smoke", study_hash(study, "smoke", list(instances), 2), base=instances[0], samples=2, epochs=1,
                instances=instances)
    study_dir = run_plan(plan, RunOptions(storage=tmp_path, address=ray_cluster, max_concurrent=1))
    records = records_with_hash(study_dir, plan.study_hash)
    assert len(records) == 2
    ot = optuna.load_study(study_name=optuna_study_name("instances", plan.study_hash),
                           storage=optuna.storages.RDBStorage(default_url(study_dir)))
    by_tune_id = {t.user_attrs["tune_trial_id"]: t for t in ot.trials}
    for record in records:
        done = record["instances"]
        assert [d["key"] for d in done] == [i.key for i in instances[:len(done)]]
        assert [d["instance"] for d in done] == list(range(len(done))) and len(done) >= 1
        assert all(0.0 <= d["auroc_val"] <= 1.0 and 0.0 <= d["auroc"] <= 1.0 and d["epochs"] == 1 for d in done)
        assert record["status"] == ("finished" if len(done) == 3 else "stopped")
        mean = sum(d["auroc_val"] for d in done) / len(done)
        assert record["metrics"]["auroc_val"] == pytest.approx(mean) and record["metrics"]["instances_done"] == len(done)
        run_dir = trial_dir(study_dir, record["trial_key"])
        assert (run_dir / INSTANCES_FILE).exists()
        for d in done:  # each instance trained from scratch on its own data set, class and seed
            saved = json.loads((instance_dir(run_dir, d["instance"], d["key"]) / "config.json").read_text())
            assert (saved["data"]["class_index"], saved["data"]["seed"]) == (d["class_index"], d["seed"])
        trial = by_tune_id[record["trial_id"]]
        assert trial.intermediate_values == pytest.approx({d["instance"]: d["auroc_val"] for d in done})
        assert trial.value == pytest.approx(mean)
