"""The catalogue of studies: every module of the `studies` package that defines a ``STUDY``."""

from __future__ import annotations

import importlib
import pkgutil

from raygan.core.errors import RayganError
from raygan.core.registry import Registry
from raygan.study.spec import Study


STUDIES: Registry[Study] = Registry("study")


def find_study(name: str) -> Study | None:
    """The catalogue's study of that name; None if it has none or the catalogue does not load."""
    try:
        load_studies()
    except RayganError:
        return None
    return STUDIES.get(name) if name in STUDIES else None


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
