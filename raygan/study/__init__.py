"""Studies: each paper table (or a search) as a small declarative, reproducible object.

A `Study` names the paper table it reproduces, a base configuration, the factors it varies (a
grid) or an Optuna search space, its profiles (`smoke`: minutes on 2 CPU cores with offline
data; `paper`: the paper's protocol) and the paper's reference numbers. `expand` turns a study and
a profile into the exact list of trials: the same study, profile and flags always give the same
list, in the same order. Nothing here imports Ray; the Tune layer (`raygan.tune`) runs the list.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
import os
import pkgutil
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from raygan.core.config import RunConfig
from raygan.data import DATASETS
from raygan.core.errors import ConfigError, RayganError
from raygan.core.registry import Registry

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
    the row is ``(dataset, *study.rows)``; SD is over classes (the paper's ±). ``per_class`` holds
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
    rows: tuple[str, ...] = ()  # factors the report puts in rows after the dataset
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
        if self.paper_speed is not None and set(self.paper_speed.ms_per_image) - set(values.get(self.paper_speed.factor, ())):
            raise ValueError(f"study {self.name}: paper_speed needs values of one of its factors ({', '.join(values)})")
        for comparison in self.comparisons:
            sides = (comparison.a, comparison.b)
            if comparison.a == comparison.b or any(k not in values or v not in values[k] for side in sides
                                                   for k, v in side.items()):
                raise ValueError(f"study {self.name}: comparison {comparison.a_label} vs {comparison.b_label} needs "
                                 f"two different settings of its factors ({', '.join(values)})")

    @property
    def is_search(self) -> bool:
        return self.search_space is not None

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ConfigError(
                f"study {self.name} has no profile {name!r}; choose one of: {', '.join(self.profiles)}"
            )
        return self.profiles[name]


# --------------------------------------------------------------------------------------------
# Expansion


def set_dotted(patch: dict, dotted: str, value: Any) -> None:
    node = patch
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def merge(base: Mapping, patch: Mapping) -> dict:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in patch.items():
        if isinstance(value, Mapping):  # copied, never aliased: patches are shared constants
            out[key] = merge(out.get(key) if isinstance(out.get(key), Mapping) else {}, value)
        else:
            out[key] = value
    return out


def narrow_profile(
    profile: Profile,
    datasets: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    samples: int | None = None,
) -> Profile:
    """A profile with the command-line flags applied (``--classes`` applies to every dataset)."""
    if datasets:
        profile = replace(profile, datasets=tuple(datasets))
    if classes is not None:
        profile = replace(profile, classes={d: tuple(classes) for d in profile.datasets})
    if seeds:
        profile = replace(profile, seeds=tuple(seeds))
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1; got {epochs}")
        profile = replace(profile, epochs=epochs)
    if samples is not None:
        if samples < 1:
            raise ConfigError(f"--samples must be >= 1; got {samples}")
        profile = replace(profile, samples=samples)
    return profile


def profile_classes(profile: Profile, dataset: str) -> tuple[int, ...]:
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose from: {', '.join(DATASETS.names())}")
    num_classes = len(DATASETS.get(dataset).class_names)
    chosen = profile.classes.get(dataset)
    if chosen is None:
        if dataset == "image_folder":
            raise ConfigError("image_folder has no fixed classes: pass --classes")
        return tuple(range(num_classes))
    for c in chosen:
        if dataset != "image_folder" and not 0 <= c < num_classes:
            raise ConfigError(f"class {c} is not a class of {dataset} (it has classes 0..{num_classes - 1})")
    return tuple(chosen)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def base_config(study: Study, profile: Profile, dataset: str, class_index: int, seed: int,
                data: Mapping[str, Any] | None = None) -> dict:
    """``data``: how a study's folder data set is read (replaces ``data.dataset``)."""
    config = merge(study.base, profile.overrides)
    config = merge(config, {"data": {"dataset": dataset, "class_index": class_index, "seed": seed}})
    if data:
        config = merge(config, {"data": data})
    if profile.epochs is not None:
        config = merge(config, {"train": {"epochs": profile.epochs}})
    return config


def _factor_values(study: Study, profile: Profile) -> list[tuple]:
    unknown = set(profile.factors) - {f.name for f in study.factors}
    if unknown:
        raise ConfigError(f"profile narrows unknown factor(s) {sorted(unknown)} of study {study.name}")
    axes = []
    for factor in study.factors:
        values = profile.factors.get(factor.name, factor.values)
        bad = [v for v in values if v not in factor.values]
        if bad:
            raise ConfigError(f"{factor.name} values {bad} are not in the study's {list(factor.values)}")
        axes.append(tuple(values))
    return axes


def expand(study: Study, profile: Profile, overrides: Mapping[str, Any] | None = None) -> list[Trial]:
    """Every trial of a grid study, in a fixed order: dataset, class, factors, seed (seed last, so
    the seeds of one cell sit together). ``overrides`` (a config patch from flags such as
    ``--data-root``) apply to every trial. Each config is validated here, before anything runs."""
    if study.is_search:
        raise RayganError(f"study {study.name} is an Optuna search; its trials are sampled while it runs")
    trials: list[Trial] = []
    axes = _factor_values(study, profile)
    for dataset in profile.datasets:
        data, classes, dataset_overrides = None, None, overrides
        if dataset in study.folder_datasets:
            data, classes = resolve_folder_dataset(study, dataset, profile, overrides)
            if overrides and "data_root" in overrides.get("data", {}):
                # --data-root names the folder holding every set; the set's own folder is in `data`
                dataset_overrides = merge(overrides, {"data": {"data_root": data["data_root"]}})
        for class_index in classes or profile_classes(profile, dataset):
            for combo in itertools.product(*axes):
                cell = {f.name: v for f, v in zip(study.factors, combo)}
                context = {"dataset": dataset, "class_index": class_index, **cell}
                if study.where is not None and not study.where(context):
                    continue
                for seed in profile.seeds:
                    if profile.where is not None and not profile.where({**context, "seed": seed}):
                        continue
                    config = base_config(study, profile, dataset, class_index, seed, data)
                    patch: dict = {}
                    for factor in study.factors:
                        if factor.key is not None:
                            set_dotted(patch, factor.key, cell[factor.name])
                    if study.configure is not None:
                        patch = merge(patch, study.configure(context))
                    if profile.configure is not None:
                        patch = merge(patch, profile.configure(context))
                    config = merge(config, patch)
                    if dataset_overrides:
                        config = merge(config, dataset_overrides)
                    factors = {"dataset": dataset, "class_index": class_index, **cell, "seed": seed}
                    key = "-".join(
                        [dataset, f"c{class_index}", *(f"{n}{_format_value(v)}" for n, v in cell.items()), f"s{seed}"]
                    )
                    trials.append(Trial(key, factors, validated(config, key)))
    if not trials:
        raise ConfigError(f"study {study.name}: the chosen profile and flags leave no trials")
    return trials


def resolve_folder_dataset(study: Study, name: str, profile: Profile,
                           overrides: Mapping[str, Any] | None) -> tuple[dict, tuple[int, ...]]:
    """(data config patch, classes) of a study's folder data set: ``<root>/<folder>`` read with
    image_folder, the normal class by its folder name. Missing folders fail here, before anything
    runs, with a message naming the folder and what belongs in it."""
    from raygan.data.image_folder import class_folder_names

    spec = study.folder_datasets[name]
    root = ((overrides or {}).get("data") or {}).get("data_root") or os.environ.get("RAYGAN_DATA")
    if not root:
        raise ConfigError(
            f"study {study.name}: data set {name} is your copy of {spec.source}; pass --data-root DIR "
            f"where DIR/{spec.folder}/ holds it (one sub-folder per class, or train/ and test/ with one each)"
        )
    folder = Path(root).expanduser() / spec.folder
    if not folder.is_dir():
        raise ConfigError(
            f"data set {name}: folder {folder} does not exist; put {spec.source} there (one sub-folder "
            f"per class, or train/ and test/ with one each), or pass --data-root DIR holding {spec.folder}/"
        )
    classes = class_folder_names(folder)
    matches = [i for i, c in enumerate(classes) if c.lower() == spec.normal_class.lower()]
    if not matches:
        raise ConfigError(
            f"data set {name}: {folder} has class folders {', '.join(classes) or '(none)'}; the normal "
            f"class folder {spec.normal_class!r} is not among them"
        )
    chosen = profile.classes.get(name, (matches[0],))
    for c in chosen:
        if not 0 <= c < len(classes):
            raise ConfigError(f"class {c} is not a class of {name} ({folder}: classes 0..{len(classes) - 1})")
    data = {"dataset": "image_folder", "data_root": str(folder.resolve()), "image_size": spec.image_size}
    return data, tuple(chosen)


def validated(config: dict, where: str) -> dict:
    """The config as a checked dict; what would fail inside a trial fails here, naming the trial."""
    from raygan.data.sampler import MIN_ANOMALIES_PER_BATCH
    from raygan.methods import METHODS

    try:
        cfg = RunConfig.from_dict(config)
        method = METHODS.get(cfg.method)
        method.resolve(cfg)
        if method.uses_labelled_anomalies and cfg.data.anomaly_fraction > 0 and cfg.train.batch_size <= MIN_ANOMALIES_PER_BATCH:
            raise ConfigError(
                f"train.batch_size {cfg.train.batch_size} leaves no room for normal images next to the "
                f"{MIN_ANOMALIES_PER_BATCH} labelled anomalies every batch holds when γ > 0 (papers/004 §3.3.2)"
            )
    except RayganError as exc:
        raise ConfigError(f"trial {where}: {exc}") from None
    return cfg.to_dict()


def search_base(study: Study, profile: Profile, overrides: Mapping[str, Any] | None = None) -> Trial:
    """The fixed part of every trial of a search (one dataset, class and seed)."""
    classes = profile_classes(profile, profile.datasets[0]) if profile.datasets else ()
    if len(profile.datasets) != 1 or len(classes) != 1 or len(profile.seeds) != 1:
        raise ConfigError(
            f"a search optimises one dataset, class and seed; got datasets {list(profile.datasets)}, "
            f"classes {list(classes)}, seeds {list(profile.seeds)} (use --datasets, --classes, --seeds)"
        )
    dataset, class_index, seed = profile.datasets[0], classes[0], profile.seeds[0]
    config = base_config(study, profile, dataset, class_index, seed)
    if overrides:
        config = merge(config, overrides)
    return Trial(f"{dataset}-c{class_index}-s{seed}", {"dataset": dataset, "class_index": class_index, "seed": seed},
                 validated(config, "base"))


def apply_sampled(base: dict, sampled: Mapping[str, Any]) -> dict:
    """A search trial's config: the base plus every sampled value whose name is a config key."""
    patch: dict = {}
    for name, value in sampled.items():
        if "." in name:
            set_dotted(patch, name, value)
    return merge(base, patch)


def study_hash(study: Study, profile_name: str, trials: Sequence[Trial] | Trial, samples: int | None) -> str:
    payload = {
        "study": study.name,
        "profile": profile_name,
        "trials": [t.as_dict() for t in trials] if isinstance(trials, Sequence) else trials.as_dict(),
        "samples": samples,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Cost estimate for --dry-run

# The model and its calibration live in raygan.engine.cost (docs/cost.md).
def estimate_seconds(config: dict) -> float:
    """CPU seconds of one trial, the middle of raygan.engine.cost.cpu_seconds_range."""
    from raygan.engine.cost import cpu_seconds_range

    return sum(cpu_seconds_range(config)) / 2


def estimate_worker_hours(configs: Sequence[dict]) -> float:
    return math.fsum(estimate_seconds(c) for c in configs) / 3600


# --------------------------------------------------------------------------------------------
# Registry: every module of the top-level `studies` package defines STUDY

STUDIES: Registry[Study] = Registry("study")


def load_studies() -> Registry[Study]:
    """Import every module of the `studies` package (once) and register its STUDY."""
    try:
        package = importlib.import_module("studies")
    except ImportError as exc:
        raise RayganError(f"cannot import the studies package ({exc}); install raygan with pip install -e .") from None
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"studies.{info.name}")
        study = getattr(module, "STUDY", None)
        if isinstance(study, Study) and study.name not in STUDIES:
            STUDIES.add(study.name, study)
    return STUDIES
