"""ASHA whose rungs come back on --resume (Tune layer; imports Ray).

Ray restores a Tune experiment's searcher but not its scheduler's state: a resumed ASHA search
would halve from empty rungs again, and the next trials would run their full budget whatever
they score. The study's own records hold every ended trial's epochs,
so this scheduler fills its rungs from them before it places the first trial of a driver (a
restored experiment, or a fresh Tuner continuing an exported search), with the value ASHA saw at
each milestone: the validation AUROC of the epoch selected among those done by then.
"""

from __future__ import annotations

import sys

from ray.tune.schedulers import ASHAScheduler

from raygan.core.errors import RayganError
from raygan.engine.loop import select_epoch
from raygan.store.records import records_with_hash
from raygan.tune.context import current_driver


class RungsFromRecords(ASHAScheduler):
    """ASHAScheduler that, once per driver, records the study's ended trials in its rungs. The
    study directory comes from the driver running now (raygan.tune.context), not from the pickle:
    a study directory may have moved since the experiment was created."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._filled = False

    def __setstate__(self, state: dict) -> None:  # unpickled by Tuner.restore: fill again
        self.__dict__.update(state)
        self._filled = False

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._filled:
            self._filled = True
            driver = current_driver()
            if driver is not None:
                records = records_with_hash(driver.study_dir, driver.study_hash)
                added = fill_rungs(self, records)
                if added:
                    print(f"raygan: ASHA's rungs filled from {len(records)} recorded trials ({added} entries)",
                          file=sys.stderr, flush=True)
        super().on_trial_add(tune_controller, trial)


def fill_rungs(scheduler: ASHAScheduler, records: list[dict]) -> int:
    """Record each trial of ``records`` in every rung whose milestone (epochs) it reached, with
    the value its run reported there (the objective SEARCH_METRIC: validation AUROC of the
    selected epoch so far). Trials already in a rung keep their value. Returns entries added."""
    brackets = getattr(scheduler, "_brackets", None)
    if not brackets or not all(hasattr(b, "_rungs") for b in brackets):
        print("raygan: this Ray's ASHA keeps its rungs elsewhere; after --resume they start empty",
              file=sys.stderr, flush=True)
        return 0
    added = 0
    for record in records:
        history, trial_id = record.get("history") or [], record.get("trial_id")
        rule = ((record.get("config") or {}).get("train") or {}).get("select", "val_auroc")
        for bracket in brackets:
            for milestone, recorded in bracket._rungs:
                if trial_id is None or trial_id in recorded or len(history) < milestone:
                    continue
                try:
                    value = select_epoch(history[: int(milestone)], rule)["auroc_val"]
                except (RayganError, KeyError):  # no validation AUROC: ASHA saw none either
                    continue
                recorded[trial_id] = scheduler._metric_op * value
                added += 1
    return added
