"""Searches: the Tuner arguments of a plan (a grid's trial keys; OptunaSearch with ASHA over epochs
for a one-instance search, with racing over instances for a search over several), and the checked
Optuna storage a search keeps its study in."""

from __future__ import annotations

from pathlib import Path

from raygan.core.errors import RayganError
from raygan.store.manifest import saved_manifest
from raygan.study import SEARCH_METRIC
from raygan.tune.plan import RACING_RULE, Plan, RunOptions, tune_concurrency


def optuna_storage_for(plan: Plan, options: RunOptions, study_dir: Path) -> tuple:
    """(storage, Optuna study name) of a search, checked: reachable, not holding another run of the
    search, and on --resume the storage the interrupted run used."""
    from raygan.store.optuna_db import default_url, open_storage, shown
    from raygan.tune.optuna_storage import check_storage

    url = options.optuna_storage or default_url(study_dir)
    saved = saved_manifest(study_dir).get("options", {})
    if options.resume and "optuna_storage" in saved and saved["optuna_storage"] != options.optuna_storage:
        was = saved["optuna_storage"] or default_url(study_dir)
        raise RayganError(f"--resume: the interrupted search kept its Optuna study in {shown(was)}, not "
                          f"{shown(url)}; pass --optuna-storage as before")
    storage = open_storage(url)
    return storage, check_storage(storage, url, plan.study.name, plan.study_hash, options.resume)


def tuner_arguments(plan: Plan, options: RunOptions, optuna: tuple | None = None) -> dict:
    from ray import tune

    if not plan.study.is_search:
        return {
            "param_space": {"trial": tune.grid_search([t.key for t in plan.trials])},
            "tune_config": tune.TuneConfig(
                max_concurrent_trials=tune_concurrency(plan, options.max_concurrent),
                reuse_actors=not options.workers_per_trial,
            ),
        }
    profile = plan.study.profile(plan.profile)
    storage, study_name = optuna if optuna is not None else (None, None)
    if plan.instances:
        from raygan.tune.racing import MEAN_VALUE, InstanceOptunaSearch, RacingScheduler

        return {"tune_config": tune.TuneConfig(
            search_alg=InstanceOptunaSearch(space=SearchSpace(plan.study.search_space, profile), metric=MEAN_VALUE,
                                            mode="max", seed=options.search_seed, storage=storage,
                                            study_name=study_name),
            scheduler=RacingScheduler(RACING_RULE),  # its race refilled from the records on --resume
            num_samples=plan.samples,
            max_concurrent_trials=tune_concurrency(plan, options.max_concurrent),
            reuse_actors=True,  # in-process trials (a search over instances never runs DDP)
        )}
    from raygan.tune.asha import RungsFromRecords
    from raygan.tune.optuna_storage import TrackedOptunaSearch

    searcher = TrackedOptunaSearch(space=SearchSpace(plan.study.search_space, profile), metric=SEARCH_METRIC,
                                   mode="max", seed=options.search_seed, storage=storage, study_name=study_name)
    scheduler = RungsFromRecords(  # ASHA, its rungs filled again from the records on --resume
        time_attr="epochs_done", metric=SEARCH_METRIC, mode="max", max_t=plan.epochs,
        grace_period=min(options.grace_epochs, plan.epochs), reduction_factor=2,
    )
    return {
        "tune_config": tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=plan.samples,
            max_concurrent_trials=tune_concurrency(plan, options.max_concurrent),
            reuse_actors=not options.workers_per_trial,
        )
    }


class SearchSpace:
    """The study's define-by-run space bound to its profile. A module-level class (not a closure):
    Tune pickles the searcher, with its space, into the experiment state that --resume restores."""

    def __init__(self, space, profile) -> None:
        self.space, self.profile = space, profile

    def __call__(self, trial):
        return self.space(trial, self.profile)
