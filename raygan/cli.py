"""The `raygan` command line.

Every user error (a RayganError) is printed as one message on standard error with exit status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence

from raygan.config import ConfigSection, DataConfig
from raygan.errors import RayganError

# Short spellings used in the papers and the issues, kept beside the field names.
FLAG_ALIASES = {"class_index": ["--class"], "anomaly_fraction": ["--gamma"]}


def add_config_arguments(parser: argparse.ArgumentParser, section: type[ConfigSection], skip=()) -> None:
    """One flag per config field, with the field's help text; unset flags keep the defaults."""
    hints = typing.get_type_hints(section)
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag, *FLAG_ALIASES.get(f.name, [])]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(
                *names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        parser.add_argument(
            *names, dest=f.name, type=base if base in (int, float) else str, default=None,
            choices=f.metadata.get("choices"), metavar=f.name.upper(), help=help_text,
        )


def config_from_args(section: type[ConfigSection], args: argparse.Namespace, prefix: str, **fixed):
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(section)  # type: ignore[arg-type]
        if getattr(args, f.name, None) is not None
    }
    values.update(fixed)
    return section.from_dict(values, prefix)


def _cmd_data_list(args: argparse.Namespace) -> int:
    from raygan.data import DATASETS

    for name in DATASETS:
        print(f"{name:15s} {DATASETS.get(name).description}")
    return 0


def _cmd_data_describe(args: argparse.Namespace) -> int:
    from raygan.data.datasets import DATASETS

    spec = DATASETS.get(args.name)
    dataset = spec.load(data_root=args.data_root, download=args.download)
    counts = dataset.class_counts()
    print(f"{dataset.name}: {spec.description}")
    print(f"found in: {dataset.location}")
    print(f"test split: {dataset.test_split}")
    shape = "x".join(map(str, dataset.train_images.shape[1:]))
    print(
        f"images: {len(dataset.train_labels)} train, {len(dataset.test_labels)} test; stored {shape} "
        f"uint8; model input {dataset.channels}x{dataset.image_size}x{dataset.image_size} in [-1, 1]"
    )
    width = max(len(n) for n in dataset.class_names) + 4
    print(f"{'class':<{width}} {'train':>7} {'test':>7}")
    for c, name in enumerate(dataset.class_names):
        print(f"{f'{c} {name}':<{width}} {counts['train'][c]:>7} {counts['test'][c]:>7}")
    return 0


def _cmd_data_split(args: argparse.Namespace) -> int:
    from raygan.data.splits import build_split, load_for_config

    cfg = config_from_args(DataConfig, args, "data", dataset=args.name)
    dataset = load_for_config(cfg)
    split = build_split(dataset, cfg)
    counts = split.counts()
    names = dataset.class_names
    print(f"data set {dataset.name} from {dataset.location}")
    print(
        f"protocol {cfg.protocol}: normal classes {[names[c] for c in split.normal_classes]}, "
        f"anomalous classes {[names[c] for c in split.anomalous_classes]}"
    )
    print(f"gamma {cfg.anomaly_fraction} (anomalies from {cfg.anomaly_source}), val fraction {cfg.val_fraction}, seed {cfg.seed}")
    for part, c in counts.items():
        print(f"{part:5s}: {c['normal']:6d} normal, {c['anomalous']:6d} anomalous")
    print(json.dumps(counts))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raygan",
        description="Ray-distributed hyperparameter and ablation studies for GAN-based anomaly detection (AGAD).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser("data", help="list, describe and split the data sets")
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    listing = data_commands.add_parser("list", help="list the registered data sets")
    listing.set_defaults(handler=_cmd_data_list)

    describe = data_commands.add_parser("describe", help="where a data set's files are and images per class")
    describe.add_argument("name", help="data set name (see `raygan data list`)")
    describe.add_argument("--data-root", help="directory holding the data set files")
    describe.add_argument(
        "--download", action=argparse.BooleanOptionalAction, default=True,
        help="download missing files into the cache (default: yes)",
    )
    describe.set_defaults(handler=_cmd_data_describe)

    split = data_commands.add_parser(
        "split", help="build a one-class split and print its counts (last line: JSON)"
    )
    split.add_argument("name", help="data set name (see `raygan data list`)")
    add_config_arguments(split, DataConfig, skip=("dataset",))
    split.set_defaults(handler=_cmd_data_split)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except RayganError as exc:
        print(f"raygan: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raygan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
