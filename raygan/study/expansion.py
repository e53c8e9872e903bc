"""Expansion: a study and a profile turned into the exact list of trials (a grid), or a search's
base trial; the same study, profile and flags always give the same list, in the same order, and
the same study hash. Also the --dry-run cost of a list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from raygan.core.config import RunConfig
from raygan.core.dicts import deep_merge
from raygan.core.errors import ConfigError, RayganError
from raygan.data import DATASETS
from raygan.study.spec import Profile, Study, Trial


def set_dotted(patch: dict, dotted: str, value: Any) -> None:
    node = patch
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


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
    config = deep_merge(study.base, profile.overrides)
    config = deep_merge(config, {"data": {"dataset": dataset, "class_index": class_index, "seed": seed}})
    if data:
        config = deep_merge(config, {"data": data})
    if profile.epochs is not None:
        config = deep_merge(config, {"train": {"epochs": profile.epochs}})
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
                dataset_overrides = deep_merge(overrides, {"data": {"data_root": data["data_root"]}})
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
                        patch = deep_merge(patch, study.configure(context))
                    if profile.configure is not None:
                        patch = deep_merge(patch, profile.configure(context))
                    config = deep_merge(config, patch)
                    if dataset_overrides:
                        config = deep_merge(config, dataset_overrides)
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


def search_instances(study: Study, profile: Profile, overrides: Mapping[str, Any] | None = None) -> tuple[Trial, ...]:
    """The instances (data set, class, seed) a search evaluates every configuration on, in one
    fixed order: seed by seed, and within each seed every (data set, class) in an order drawn once
    from the study's name, so that a configuration's first instances already span classes. A
    profile with one data set, class and seed is a one-instance search."""
    from raygan.data.splitmix import keyed_order

    cells = [(dataset, c) for dataset in profile.datasets for c in profile_classes(profile, dataset)]
    if not cells or not profile.seeds:
        raise ConfigError(f"search {study.name}: the chosen profile and flags leave no instance")
    drawn = [cells[i] for i in keyed_order(0, f"search instances:{study.name}", np.arange(len(cells)))]
    instances = []
    for seed in profile.seeds:
        for dataset, class_index in drawn:
            config = base_config(study, profile, dataset, class_index, seed)
            if overrides:
                config = deep_merge(config, overrides)
            key = f"{dataset}-c{class_index}-s{seed}"
            instances.append(Trial(key, {"dataset": dataset, "class_index": class_index, "seed": seed},
                                   validated(config, f"instance {key}")))
    return tuple(instances)


def search_base(study: Study, profile: Profile, overrides: Mapping[str, Any] | None = None) -> Trial:
    """The fixed part of every trial of a search: its first instance."""
    return search_instances(study, profile, overrides)[0]


def apply_sampled(base: dict, sampled: Mapping[str, Any]) -> dict:
    """A search trial's config: the base plus every sampled value whose name is a config key."""
    patch: dict = {}
    for name, value in sampled.items():
        if "." in name:
            set_dotted(patch, name, value)
    return deep_merge(base, patch)


def study_hash(study: Study, profile_name: str, trials: Sequence[Trial] | Trial, samples: int | None) -> str:
    payload = {
        "study": study.name,
        "profile": profile_name,
        "trials": [t.as_dict() for t in trials] if isinstance(trials, Sequence) else trials.as_dict(),
        "samples": samples,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# The model and its calibration live in raygan.engine.cost (docs/cost.md).
def estimate_seconds(config: dict) -> float:
    """CPU seconds of one trial, the middle of raygan.engine.cost.cpu_seconds_range."""
    from raygan.engine.cost import cpu_seconds_range

    return sum(cpu_seconds_range(config)) / 2


def estimate_worker_hours(configs: Sequence[dict]) -> float:
    return math.fsum(estimate_seconds(c) for c in configs) / 3600
