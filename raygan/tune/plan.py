"""What the Tune layer runs: a study expanded for one profile (`Plan`), and how (`RunOptions`).

Grid studies pass their expanded trial list as one `tune.grid_search` axis of trial keys (the
expansion in `raygan.study` is the single source of order and content); searches use a seeded
`OptunaSearch` with an ASHA scheduler on validation AUROC, or, over several instances, racing
(raygan.tune.racing). Nothing here imports Ray.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from raygan.core.errors import ConfigError
from raygan.store.trial_files import KEEP_CHECKPOINTS
from raygan.study import Study, Trial
from raygan.study.racing import RacingRule

# How searches over several instances race their configurations: a paired one-sided t-test
# against the incumbent, which can reject at 3 shared instances (Wilcoxon's signed-rank test
# cannot before 4 at this p-value); benchmarks/racing.py compares them.
RACING_RULE = RacingRule(test="t", p_value=0.1, min_instances=3)


@dataclass(frozen=True)
class RunOptions:
    """How to run a study (not what: that is the study, profile and flags)."""

    storage: Path
    resume: bool = False
    address: str | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 0  # 0: train in-process; N >= 1: a Ray Train DDP trainer with N workers
    cpus_per_worker: float = 0.9
    max_failures: int = 0
    search_seed: int = 0
    grace_epochs: int = 1  # ASHA: epochs before a search trial may be stopped
    optuna_storage: str | None = None  # searches: an Optuna storage URL; None: <study dir>/optuna.db
    keep_checkpoints: str = "selected"  # of a finished trial: selected | all | none (KEEP_CHECKPOINTS)
    # An in-process trial keeps the data sets it prepared (decoded, resized) for the next run in
    # its process: raygan.data.prepared. Off: every run prepares its own.
    keep_data: bool = True

    def check(self) -> None:
        if self.cpus_per_trial <= 0:
            raise ConfigError(f"--cpus-per-trial must be > 0; got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ConfigError(f"--gpus-per-trial must be >= 0; got {self.gpus_per_trial}")
        if self.workers_per_trial < 0:
            raise ConfigError(f"--workers-per-trial must be >= 0; got {self.workers_per_trial}")
        if self.max_failures < 0:
            raise ConfigError(f"--max-failures must be >= 0; got {self.max_failures}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be >= 1; got {self.max_concurrent}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"--cpus-per-worker must be > 0; got {self.cpus_per_worker}")
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ConfigError(f"--keep-checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}; "
                              f"got {self.keep_checkpoints!r}")


@dataclass(frozen=True)
class Plan:
    """A study expanded for one profile: the grid's trials, or a search's base trial and budget."""

    study: Study
    profile: str
    study_hash: str
    trials: tuple[Trial, ...] = ()  # grid
    base: Trial | None = None  # search: its first instance
    samples: int | None = None
    epochs: int = 0
    # A search over several instances: every configuration on each, in this order, raced
    # (raygan.study.racing); empty for a one-instance search (ASHA over epochs).
    instances: tuple[Trial, ...] = ()

    def manifest(self, options: RunOptions) -> dict:
        return {
            "study": self.study.name,
            "reproduces": self.study.reproduces,
            "profile": self.profile,
            "study_hash": self.study_hash,
            "kind": "search" if self.study.is_search else "grid",
            "trials": len(self.trials) if not self.study.is_search else self.samples,
            "rows": ["dataset", *self.study.row_factors],
            "trial_list": [t.as_dict() for t in self.trials] if self.trials else None,
            "base": self.base.as_dict() if self.base else None,
            **({"instances": [t.as_dict() for t in self.instances], "racing": RACING_RULE.describe()}
               if self.instances else {}),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        }


def study_dir_for(storage: Path, study: Study) -> Path:
    return (storage.expanduser() / study.name).resolve()


def tune_concurrency(plan: Plan, max_concurrent: int | None) -> int | None:
    """The max_concurrent_trials Tune gets: searches default to 1, so that a seeded TPE search is
    reproducible (with more, its suggestions depend on completion order); grids to no limit."""
    return (max_concurrent or 1) if plan.study.is_search else max_concurrent
