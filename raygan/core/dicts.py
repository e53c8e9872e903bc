"""Nested dicts, as configs and factors are: merged with a patch, or flattened to dotted names."""

from __future__ import annotations

from collections.abc import Mapping


def deep_merge(base: Mapping, patch: Mapping) -> dict:
    """``base`` with ``patch`` applied: nested mappings merge key by key, anything else replaces.
    The result is copied where patched, never aliased: patches are often shared constants."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in patch.items():
        if isinstance(value, Mapping):
            out[key] = deep_merge(out.get(key) if isinstance(out.get(key), Mapping) else {}, value)
        else:
            out[key] = value
    return out


def flatten(values: Mapping, prefix: str = "") -> dict:
    """One level: nested keys joined with dots (``{"model": {"backbone": x}}`` -> ``model.backbone``),
    each name prefixed with ``prefix``."""
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
