"""The state that crosses Tune's pickling, made explicit.

`TrialSetup` is what every trial of a study shares; Tune pickles it to each trial process
(``tune.with_parameters``). `DriverContext` is the driver running now: Tune pickles its callbacks
and scheduler into the experiment when a study starts and brings those copies back on --resume
(it has no way to pass new ones), so the recorder and the ASHA and racing schedulers read what may
differ between the first run and a resume (where the study directory is now, the hash,
--keep-checkpoints) from here, live, never from their pickled state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from raygan.study import apply_sampled


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares."""

    kind: str  # grid | search
    study_dir: str
    trials: dict = field(default_factory=dict)  # grid: trial key -> Trial.as_dict()
    base: dict | None = None  # search: the base trial's as_dict()
    workers_per_trial: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    cpus_per_worker: float = 0.9
    keep_data: bool = True  # an in-process trial keeps its prepared data (raygan.data.prepared)
    # A search over several instances: each instance's as_dict(), in the search's order.
    instances: tuple[dict, ...] = ()

    def trial_key(self, config: dict, trial_id: str) -> str:
        """The study's key of the Tune trial with ``config`` and ``trial_id``."""
        return config["trial"] if self.kind == "grid" else f"trial-{trial_id}"

    def factors_and_config(self, config: dict) -> tuple[dict, dict]:
        """A Tune trial's factors and run configuration: a grid's from its trial key, a search's
        from the base trial and the values Optuna sampled (``config``)."""
        if self.kind == "grid":
            spec = self.trials[config["trial"]]
            return spec["factors"], spec["config"]
        sampled = dict(config)
        return {**self.base["factors"], **sampled}, apply_sampled(self.base["config"], sampled)


@dataclass(frozen=True)
class DriverContext:
    """The study driver running now."""

    study_dir: Path
    study_hash: str
    plan_info: dict  # study, study_hash, profile, trials (count), epochs, instances (count)
    setup: TrialSetup
    keep_checkpoints: str = "selected"  # of a finished trial: selected | all | none
    # What stopped it, as it happens: "interrupted" (Ctrl-C or SIGTERM seen), "disk_full" (the path)
    events: dict = field(default_factory=dict)


_current: DriverContext | None = None


def current_driver() -> DriverContext | None:
    """The driver running in this process (None outside a study's run)."""
    return _current


@contextlib.contextmanager
def driving(context: DriverContext) -> Iterator[DriverContext]:
    """Make ``context`` the driver running now, for the block."""
    global _current
    before, _current = _current, context
    try:
        yield context
    finally:
        _current = before
