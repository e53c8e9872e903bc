"""Racing in Tune (Tune layer; imports Ray): a scheduler that stops a search trial as soon as the
race (`raygan.study.racing`) rejects its configuration, and an OptunaSearch that keeps one intermediate
value per instance.

A search trial evaluates one configuration on the search's instances in a fixed order and reports
once per completed instance: the instance's index (``instance``), its validation value
(``instance_auroc_val``), the mean over the instances completed so far (``mean_auroc_val``, the
search's objective) and their count (``instances_done``, the time attribute of successive halving
over instances). The scheduler records every report in its race and answers STOP for a trial the
race rejects; the others run on.

Tune pickles the scheduler into its experiment state, and a restored experiment brings back the
scheduler as it was created, with an empty race. So, once per driver, before its first trial is
placed, the scheduler fills its race from the study's records (every ended trial's instance
values), as `raygan.tune.asha` does for ASHA's rungs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from raygan.store.records import records_with_hash
from raygan.study.racing import Comparison, Race, RacingRule
from raygan.tune.context import current_driver
from raygan.tune.optuna_storage import TrackedOptunaSearch

INSTANCE = "instance"  # index of the instance in the search's fixed order
INSTANCE_VALUE = "instance_auroc_val"  # that instance's validation AUROC (its selected epoch's)
MEAN_VALUE = "mean_auroc_val"  # mean over the instances completed: the search's objective
INSTANCES_DONE = "instances_done"  # successive halving over instances counts these
# A study record's per-instance entries: [{"instance": i, "auroc_val": v, ...}, ...]
RECORD_INSTANCES = "instances"
RECORD_VALUE = "auroc_val"


def driver_records() -> list[dict]:
    """The ended trials of the search the driver running now continues (none outside a driver)."""
    driver = current_driver()
    if driver is None:
        return []
    return records_with_hash(driver.study_dir, driver.study_hash)


class RacingScheduler(FIFOScheduler):
    """FIFO placement; STOP for a trial whose configuration the race rejects. ``records`` returns
    the study's records to fill the race from once per driver (default: those of the driver running
    now, raygan.tune.context, read when the first trial is added: a study directory may have moved
    since the experiment was pickled)."""

    # Every report must reach on_trial_result: a buffered one would skip an instance of the race.
    _supports_buffered_results = False

    def __init__(self, rule: RacingRule | None = None, records: Callable[[], list[dict]] | None = driver_records) -> None:
        super().__init__()
        self.race = Race(rule)
        self.records = records
        self.rejected: dict[str, Comparison] = {}
        self._filled = False

    @property
    def rule(self) -> RacingRule:
        return self.race.rule

    def __setstate__(self, state: dict) -> None:  # unpickled by Tuner.restore: fill again
        self.__dict__.update(state)
        self._filled = False

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        # The race reads its own result keys; a search mode other than the race's would turn it around.
        return mode is None or mode == self.rule.mode

    def fill(self, records: list[dict]) -> int:
        """Record each record's instance values under its Tune trial id; returns values added."""
        added = 0
        for record in records:
            trial_id = record.get("trial_id")
            for entry in record.get(RECORD_INSTANCES) or []:
                value = entry.get(RECORD_VALUE)
                if trial_id is None or value is None or value != value:  # NaN: the instance gave no value
                    continue
                self.race.record(trial_id, int(entry[INSTANCE]), value)
                added += 1
        return added

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._filled:
            self._filled = True
            records = self.records() if self.records is not None else []
            added = self.fill(records)
            if added:
                print(f"raygan: racing filled from {len(records)} recorded trials ({added} instance values)",
                      file=sys.stderr, flush=True)
        super().on_trial_add(tune_controller, trial)

    def _record(self, trial, result: dict) -> bool:
        if INSTANCE not in result or INSTANCE_VALUE not in result:
            return False
        value = result[INSTANCE_VALUE]
        if value is None or value != value:  # an instance without a validation AUROC races nothing
            return False
        self.race.record(trial.trial_id, int(result[INSTANCE]), value)
        return True

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if not self._record(trial, result):
            return TrialScheduler.CONTINUE
        comparison = self.race.compare(trial.trial_id)
        if comparison.rejected:
            self.rejected[trial.trial_id] = comparison
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result:
            self._record(trial, result)

    def debug_string(self) -> str:
        incumbent = self.race.incumbent()
        if incumbent is None:
            return f"Racing ({self.rule.describe()}): no instance completed yet"
        return (f"Racing ({self.rule.describe()}): incumbent {incumbent} at {self.race.mean(incumbent):.4f} over "
                f"{self.race.instances_done(incumbent)} instances; {len(self.rejected)} stopped; "
                f"{self.race.instance_runs()} instance-runs")


class InstanceOptunaSearch(TrackedOptunaSearch):
    """TrackedOptunaSearch whose Optuna trials hold one intermediate value per completed instance, the
    instance's own validation value at step = instance index (Optuna's WilcoxonPruner reads them
    so), instead of the objective at Tune's iteration count. The trial's final value stays the
    objective (``metric``: the mean over the instances completed)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reported_instances: dict[str, set[int]] = {}

    def _report_instance(self, trial_id: str, result: dict) -> None:
        value = result[INSTANCE_VALUE]
        if trial_id not in self._ot_trials or value is None or value != value:
            return
        reported = self._reported_instances.setdefault(trial_id, set())
        instance = int(result[INSTANCE])
        if instance not in reported:  # the last report also comes with the trial's completion
            self._ot_trials[trial_id].report(float(value), instance)
            reported.add(instance)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if INSTANCE not in result or INSTANCE_VALUE not in result:
            return super().on_trial_result(trial_id, result)
        if trial_id not in self._completed_trials:
            self._report_instance(trial_id, result)
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # A trial that a scheduler stops gets no on_trial_result for its last report, only this.
        if result and INSTANCE in result and INSTANCE_VALUE in result and trial_id not in self._completed_trials:
            self._report_instance(trial_id, result)
        super().on_trial_complete(trial_id, result, error)
        self._reported_instances.pop(trial_id, None)
