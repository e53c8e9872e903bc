"""What a study declares: its factors, profiles, paper table and folder data sets, and the
`Study` itself (plain data, no Ray). A study file reads like the caption of the paper table it
reproduces; expansion into trials is raygan.study.expansion.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raygan.core.errors import ConfigError

# Searches optimise validation AUROC, never the test set: the trial's best so far (its
# validation-selected epoch's), so that Optuna's value for a trial is the ``auroc_val`` of its
# results row, and ASHA compares trials by the model each would deploy.
SEARCH_METRIC = "run_auroc_val"


@dataclass(frozen=True)
class Factor:
    """One axis of a grid: a name (used in trial keys, reports and Parquet), its values, and the
    config key it sets (dotted, e.g. ``data.anomaly_fraction``), or none when the study's
    ``configure`` derives the config from several factors together."""

    name: str
    values: tuple
    key: str | None = None
    label: str | None = None  # how the report names it (the paper's column header)

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"factor {self.name} has no values")
        object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class Profile:
    """What a profile runs. ``classes`` maps a dataset to its classes (missing: every class);
    ``factors`` narrows factor values (missing: all of the study's values)."""

    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int | None = None  # None: the config's default (the paper's)
    classes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    factors: Mapping[str, tuple] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # config patch, e.g. batch size
    samples: int | None = None  # searches: number of Optuna trials
    description: str = ""
    # Beyond the study's own: ``configure`` patches a trial's config after the study's configure
    # (e.g. a cheaper generator for one method only); ``where`` receives the trial's factors and
    # its seed and keeps or drops the trial (e.g. extra seeds only where methods are close).
    configure: Callable[[dict], dict] | None = None
    where: Callable[[dict], bool] | None = None


# The cpu profiles' training: the budget the quality benchmark (now the one_class cpu profile) found workable on real
# Fashion-MNIST on 2 cores (naive generator, 5 epochs, batch 64 at γ = 0, 1 torch thread per trial,
# two trials at once: about 6 minutes per AGAD trial). The learning rate stays the paper's 2e-4.
CPU_EPOCHS = 5
CPU_TRAIN = {"batch_size": 64}
# With γ > 0 every batch holds at least 32 labelled anomalies (§3.3.2): at batch 64 half of every
# batch would be anomalies and an epoch (one pass over the normals) twice the steps; batch 128 keeps
# a quarter, nearer the paper's 32 of 256, at 1.35x the cost of a γ = 0 epoch at batch 64.
CPU_TRAIN_WITH_ANOMALIES = {"batch_size": 128}
# The ablations' cpu profiles cut the classes: two that the detectors find easy (Trouser, Ankle
# boot) and the two hardest for AGAD in a one-seed benchmark run of every class (Pullover, Bag).
CPU_ABLATION_CLASSES = (1, 2, 8, 9)


def naive_agad(context: dict) -> dict:
    """cpu profiles: AGAD trains the naive generator (UNet++ is 8x slower on a CPU); other methods
    keep their own networks."""
    return {"model": {"backbone": "naive"}} if context.get("method", "agad") == "agad" else {}


# The smoke profiles' training: on the 8x8 digits (fewer than 180 normal training images a class)
# batch 64 gives 2-4 steps an epoch, and 5x the paper's learning rate lets a 10-15 epoch smoke run
# learn something in minutes on 2 CPU cores. The paper profiles keep batch 256 and 2e-4 (AGAD §4.2).
SMOKE_TRAIN = {"batch_size": 64, "lr": 0.001}


@dataclass(frozen=True)
class Trial:
    """One training run of a study: exactly one RunConfig, plus the factor values it stands for."""

    key: str  # readable and unique within the study; names the trial's directory
    factors: dict[str, Any]
    config: dict[str, Any]  # a complete RunConfig dict (validated)

    def as_dict(self) -> dict:
        return {"key": self.key, "factors": self.factors, "config": self.config}


@dataclass(frozen=True)
class PaperTable:
    """The paper's reference numbers: (row factor values...) -> (mean, SD) in percent AUROC, where
    the row is ``(dataset, *study.row_factors)``; SD is over classes (the paper's ±). ``per_class`` holds
    the row's class-by-class numbers where the table prints them (index = class)."""

    source: str
    values: Mapping[tuple, tuple[float, float | None]]
    per_class: Mapping[tuple, tuple[float, ...]] = field(default_factory=dict)

    def get(self, row: tuple) -> tuple[float, float | None] | None:
        return self.values.get(tuple(row))

    def classes(self, row: tuple) -> tuple[float, ...] | None:
        return self.per_class.get(tuple(row))


@dataclass(frozen=True)
class FolderDataset:
    """A data set the user supplies as an image folder (e.g. a medical set of papers/004 Table 3),
    read with ``image_folder`` from ``<--data-root>/<folder>``; the study names it (row label, trial
    key) and trains with its normal class folder as the one normal class."""

    folder: str  # sub-folder of --data-root (or $RAYGAN_DATA)
    normal_class: str  # the class folder of normal images (matched ignoring case)
    source: str  # what to put there and where to get it: the missing-folder message says it
    image_size: int = 128  # papers/004 §5: medical images at 128x128


def parse_paper_cell(text: str | None) -> tuple[float, float | None] | None:
    """'98.2±2.45' -> (98.2, 2.45); '100.' -> (100.0, None); None or '-' -> None."""
    if text is None or text.strip() in ("", "-"):
        return None
    match = re.fullmatch(r"\s*([0-9.]+)\s*(?:±\s*([0-9.]+))?\s*", text)
    if not match:
        raise ValueError(f"cannot read paper cell {text!r} (expected e.g. '98.2±2.45')")
    sd = match.group(2)
    return float(match.group(1)), float(sd) if sd is not None else None


@dataclass(frozen=True)
class Comparison:
    """One comparison a paper table is about: the runs whose factors take ``a``'s values against
    those taking ``b``'s, paired by every factor neither sets (class, seed, γ, ...)."""

    a: Mapping[str, Any]
    b: Mapping[str, Any]
    a_label: str
    b_label: str


@dataclass(frozen=True)
class PaperSpeed:
    """The paper's time to score one image by the value of one factor (a generator, say), beside
    which the report puts the run's own (raygan.engine.latency)."""

    factor: str
    ms_per_image: Mapping[Any, float]
    source: str


@dataclass(frozen=True)
class Study:
    name: str
    reproduces: str  # e.g. "papers/004 Table 5"
    caption: str
    base: Mapping[str, Any]  # config patch applied to every trial
    profiles: Mapping[str, Profile]
    factors: tuple[Factor, ...] = ()
    # Both receive the trial's factors: dataset, class_index and the study's factors (not the seed).
    where: Callable[[dict], bool] | None = None  # which factor combinations exist (paper's cells)
    configure: Callable[[dict], dict] | None = None  # factors -> config patch, beyond Factor.key
    row_factors: tuple[str, ...] = ()  # factors the paper table (and the report) puts in rows after the dataset
    paper: PaperTable | None = None
    # Searches: define-by-run Optuna space (trial, profile) -> {name: constant}; sampled names
    # with a dot are config keys, others are recorded only.
    search_space: Callable[[Any, Profile], dict | None] | None = None
    folder_datasets: Mapping[str, FolderDataset] = field(default_factory=dict)  # names usable in profiles
    # A head-to-head the report adds: (factor, a, b), e.g. ("method", "agad", "ganomaly"): a − b
    # paired by seed on each class (raygan.analysis.report.versus_rows).
    versus: tuple[str, Any, Any] | None = None
    # The comparisons the table is about, each A against B paired by every other factor
    # (raygan.analysis.comparisons), e.g. Table 5's BN strategies against shared BN at each γ.
    comparisons: tuple[Comparison, ...] = ()
    paper_speed: PaperSpeed | None = None

    def __post_init__(self) -> None:
        if self.versus is not None:
            name, a, b = self.versus
            factor = next((f for f in self.factors if f.name == name), None)
            if factor is None or a not in factor.values or b not in factor.values or a == b:
                raise ValueError(f"study {self.name}: versus {self.versus} needs two values of one of its factors")
        values = {f.name: f.values for f in self.factors}
        for comparison in self.comparisons:
            sides = (comparison.a, comparison.b)
            if comparison.a == comparison.b or any(k not in values or v not in values[k] for side in sides
                                                   for k, v in side.items()):
                raise ValueError(f"study {self.name}: comparison {comparison.a_label} vs {comparison.b_label} needs "
                                 f"two different settings of its factors ({', '.join(values)})")
        if self.paper_speed is not None and set(self.paper_speed.ms_per_image) - set(values.get(self.paper_speed.factor, ())):
            raise ValueError(f"study {self.name}: paper_speed needs values of one of its factors ({', '.join(values)})")

    @property
    def is_search(self) -> bool:
        return self.search_space is not None

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ConfigError(
                f"study {self.name} has no profile {name!r}; choose one of: {', '.join(self.profiles)}"
            )
        return self.profiles[name]
