"""Config fields as command-line flags: one flag per field of a config section (nested sections
flattened, the field's help text as the flag's), read back as a nested dict of what the user set.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from raygan.core.config import ConfigSection


# Short spellings used in the papers, kept beside the field names.
FLAG_ALIASES = {"class_index": ["--class"], "anomaly_fraction": ["--gamma"]}


SECTION_SEP = "__"
# Config sections whose unset fields the method fills with its own (paper) defaults.
METHOD_DEFAULTED = ("model", "loss", "train")


def add_config_arguments(
    parser: argparse.ArgumentParser, section: type[ConfigSection], prefix: str = "", skip=()
) -> None:
    """One flag per config field (nested sections flattened), with the field's help text.

    Unset flags stay None, so only what the user typed overrides the defaults or --config file.
    """
    hints = typing.get_type_hints(section)
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        if f.name in skip:
            continue
        kind = hints[f.name]
        dest = f"{prefix}{SECTION_SEP}{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(kind):
            group = parser.add_argument_group(f.name, kind.__doc__)
            add_config_arguments(group, kind, dest, skip)
            continue
        names = ["--" + f.name.replace("_", "-"), *FLAG_ALIASES.get(f.name, [])]
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "")
        if default is not None:
            help_text = f"{help_text} (default: {default})"
        elif "default" not in help_text:
            # unset: the method fills in its own paper default (model, loss, train); data fields stay unset
            help_text += " (default: the method's own)" if prefix in METHOD_DEFAULTED else " (default: unset)"
        if kind is bool or kind == (bool | None):
            parser.add_argument(
                *names, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        parser.add_argument(
            *names, dest=dest, type=base if base in (int, float) else str, default=None,
            choices=f.metadata.get("choices"), metavar=f.name.upper(), help=help_text,
        )


def config_values_from_args(args: argparse.Namespace) -> dict:
    """The flags the user set, as a nested dict (``data__seed`` -> {"data": {"seed": ...}})."""
    values: dict = {}
    for dest, value in vars(args).items():
        if value is None or dest in ("handler", "command") or dest.startswith("_"):
            continue
        parts = dest.split(SECTION_SEP)
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return values


def config_from_args(section: type[ConfigSection], args: argparse.Namespace, prefix: str, **fixed):
    names = {f.name for f in dataclasses.fields(section)}  # type: ignore[arg-type]
    values = {k: v for k, v in config_values_from_args(args).items() if k in names}
    values.update(fixed)
    return section.from_dict(values, prefix)
