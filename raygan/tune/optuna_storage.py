"""The Tune side of a search's Optuna study (imports Ray and Optuna): checking the storage before
a run, failing trials a killed driver left running, and the OptunaSearch that tags its trials.
Where the study lives and how it is opened: raygan.store.optuna_db."""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from raygan.core.errors import RayganError
from raygan.store.optuna_db import TUNE_TRIAL_ATTR, optuna_study_name, shown

ORPHANED_ATTR = "raygan_orphaned"


def check_storage(storage: RDBStorage, url: str, study: str, study_hash: str, resume: bool) -> str:
    """The Optuna study name to use; refuses a storage that holds another run of the same search
    (other trials: another hash), and, without --resume, one that already holds this run."""
    name = optuna_study_name(study, study_hash)
    names = optuna.get_all_study_names(storage)
    others = sorted(n for n in names if n.startswith(f"raygan-{study}-") and n != name)
    if others:
        raise RayganError(
            f"--optuna-storage {shown(url)} already holds Optuna study {others[0]}, another run of search {study} "
            f"(other profile or flags); it is not appended to: use another database, or the same profile and "
            f"flags as that run with --resume"
        )
    if name in names and not resume:
        raise RayganError(
            f"--optuna-storage {shown(url)} already holds Optuna study {name} (this search); pass --resume to "
            f"continue it, or use another database"
        )
    return name


def fail_orphans(storage: RDBStorage, study_name: str, why: str, known: set | None = None) -> int:
    """Fail (and mark why) the study's RUNNING trials whose Tune trial will never report: those not
    in ``known`` (Optuna trial ids). Returns how many."""
    if study_name not in optuna.get_all_study_names(storage):
        return 0
    study_id, known = storage.get_study_id_from_name(study_name), known or set()
    failed = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in known:
            storage.set_trial_user_attr(trial._trial_id, ORPHANED_ATTR, why)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            failed += 1
    return failed


class TrackedOptunaSearch(OptunaSearch):
    """OptunaSearch whose Optuna trials carry their Tune trial id (user attribute ``tune_trial_id``),
    and which, restored after its driver was killed, fails the Optuna trials it had asked for after
    its last saved state: their Tune trials are unknown to the restored experiment and will never
    report, so they would stay RUNNING in the database for ever."""

    def suggest(self, trial_id: str):
        params = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return params

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        storage = self._storage
        if storage is None or getattr(self, "_ot_study", None) is None:
            return
        fail_orphans(storage, self._study_name, "asked before the driver was killed; its Tune trial was not restored",
                     known={t._trial_id for t in self._ot_trials.values()})
