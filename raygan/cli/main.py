"""The `raygan` command line.

Every user error (a RayganError) is printed as one message on standard error with exit status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from raygan.cli.boundary import OneLineParser, finite_float, guarded
from raygan.cli.config_flags import add_config_arguments, config_from_args, config_values_from_args
from raygan.core.config import DataConfig
from raygan.core.dicts import deep_merge
from raygan.core.errors import RayganError
from raygan.core.paths import check_output_dir, check_output_file

# Imported only by the Ray layers (DDP, Tune studies): a bare GPU box can train without them.
OPTIONAL_DEPENDENCIES = {
    "ray": "pip install 'ray[default,tune,train]' (or train without --workers)",
    "optuna": "pip install optuna",
}


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


def _cmd_models(args: argparse.Namespace) -> int:
    from raygan.methods import METHODS
    from raygan.models import BN_STRATEGIES, DISCRIMINATORS, GENERATORS, count_parameters

    counts = {name: count_parameters(GENERATORS.get(name)(1, 32)) for name in GENERATORS}
    if args.json:
        print(json.dumps(counts))
        return 0
    print("generators (1 channel, 32x32, latent 100):")
    for name, n in counts.items():
        print(f"  {name:14s} {n / 1e6:6.2f} M  {_first_line(GENERATORS.get(name).__doc__)}")
    print("discriminators (1 channel, 32x32):")
    for name in DISCRIMINATORS:
        n = count_parameters(DISCRIMINATORS.get(name)(1, 32))
        print(f"  {name:14s} {n / 1e6:6.2f} M  {_first_line(DISCRIMINATORS.get(name).__doc__)}")
    print("batch-norm strategies:")
    for name in BN_STRATEGIES:
        extra = count_parameters(GENERATORS.get("naive")(1, 32, norm=BN_STRATEGIES.get(name))) - counts["naive"]
        print(f"  {name:14s} +{extra} parameters on naive")
    print("methods:")
    for name in METHODS:
        cls = METHODS.get(name)
        weights = ", ".join(f"{k}={v}" for k, v in cls.default_weights.items())
        print(f"  {name:14s} backbone {cls.default_backbone}, discriminator {cls.default_discriminator}; {weights}")
    return 0


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raygan.core.config import RunConfig
    from raygan.engine.loop import train

    values: dict = {}
    if args._config:
        try:
            text = Path(args._config).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise RayganError(f"cannot read --config {args._config}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RayganError(f"--config {args._config} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise RayganError(f"--config {args._config} holds a JSON {type(values).__name__}; it must hold one "
                              f"object of config sections, as a run's config.json does")
        try:  # the file on its own: a flag must not hide a malformed section by replacing it
            RunConfig.from_dict(values)
        except RayganError as exc:
            raise RayganError(f"--config {args._config}: {exc}") from None
    flags = config_values_from_args(args)
    check_train_flags(args, flags)
    for flag, protocol in (("_normal_class", "normal_class"), ("_anomaly_class", "anomaly_class")):
        if getattr(args, flag) is not None:
            flags.setdefault("data", {}).update(protocol=protocol, class_index=getattr(args, flag))
    cfg = RunConfig.from_dict(deep_merge(values, flags))
    out = check_output_dir(args._out, "--out", "a run directory") if args._out else None
    if out is not None:
        check_not_foreign(out, "--out", RUN_MARKS, "a raygan run (an existing run's folder continues that run)")

    def announce(method) -> None:
        # On stderr, so the result's JSON line stays the last of stdout. The paper defaults can be
        # large (AGAD: UNet++), and the cost should be no surprise.
        from raygan.methods import network_summary

        print(f"raygan train: {network_summary(method)}", file=sys.stderr, flush=True)

    if args._workers:
        import ray  # noqa: F401  (a missing Ray is one line from main, before any data is loaded)

        from raygan.methods import METHODS
        from raygan.raytrain.ddp import check_scaling
        from raygan.raytrain.startup import check_reachable

        # before the data and the networks: a wrong address fails in seconds, impossible scaling at once
        check_scaling(METHODS.get(cfg.method).resolve(cfg), args._workers, args._gpus_per_worker,
                      args._cpus_per_worker, args._sync_bn)
        check_reachable(args._address)

        from raygan.data import load_for_config
        from raygan.methods import build_method
        from raygan.raytrain.ddp import train_with_ray

        dataset = load_for_config(cfg.data)  # the workers build the networks; this says what they are
        announce(build_method(cfg, dataset.channels, cfg.data.image_size or dataset.image_size))

        result = train_with_ray(
            cfg, out, workers=args._workers, gpus_per_worker=args._gpus_per_worker,
            cpus_per_worker=args._cpus_per_worker, sync_bn=args._sync_bn, address=args._address,
            threads=cfg.train.threads,
        )
    else:
        from raygan.compute.devices import resolve_device

        device = resolve_device(args._device or "auto")
        result = train(cfg, out_dir=out, progress=args._progress, device=device, on_start=announce)
    summary = {k: v for k, v in result.items() if k != "history"}
    if out is not None:
        summary["out"] = str(out)
    print(json.dumps(summary))
    return 0


# What a run directory holds (raygan.engine.loop): --out may name one, to continue it.
RUN_MARKS = ("config.json", "metrics.json", "checkpoints")


def check_not_foreign(path: Path, flag: str, marks: tuple[str, ...], what: str) -> None:
    """Refuse a non-empty folder that nothing of raygan's wrote: writing there would mix or replace
    someone else's files."""
    names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    names = [n for n in names if n != "raygan-error.log"]
    if names and not set(marks) & set(names):
        listed = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise RayganError(f"{flag} {path} holds files that are not {what}: {listed}; give a new or empty folder")


def check_train_flags(args: argparse.Namespace, flags: dict) -> None:
    """Refuse flags that contradict each other, instead of letting the last one win silently."""
    data = flags.get("data", {})
    shorthands = [(f, p) for f, p in (("--normal-class", "normal_class"), ("--anomaly-class", "anomaly_class"))
                  if getattr(args, "_" + p) is not None]
    if len(shorthands) == 2:
        raise RayganError("--normal-class and --anomaly-class contradict each other: a run has one protocol; "
                          "give one of them")
    if shorthands:
        flag, protocol = shorthands[0]
        value = getattr(args, "_" + protocol)
        if data.get("protocol") not in (None, protocol):
            raise RayganError(f"{flag} {value} contradicts --protocol {data['protocol']}; give one of them")
        if data.get("class_index") not in (None, value):
            raise RayganError(f"{flag} {value} contradicts --class {data['class_index']}; give one of them")
    if not args._workers:
        given = [flag for flag, dest in (("--address", "_address"), ("--sync-bn", "_sync_bn"),
                                         ("--gpus-per-worker", "_gpus_per_worker")) if getattr(args, dest)]
        if given:
            raise RayganError(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to distributed runs: "
                              f"add --workers N")
    elif args._device is not None:
        raise RayganError("--device is for the single-process path; Ray gives each --workers worker its "
                          "device (CUDA with --gpus-per-worker > 0, else CPU)")


def _cmd_score(args: argparse.Namespace) -> int:
    import csv

    from raygan.engine.detector import Detector, save_maps

    # where the results go is checked before the (slow) scoring, so nothing is computed for nothing
    if args.out:
        check_output_file(args.out, "--out")
        if any(Path(args.out).resolve() == Path(p).resolve() for p in args.inputs + [args.checkpoint]):
            raise RayganError(f"--out {args.out} is one of the inputs; the CSV would replace it: name another file")
    if args.save_maps:
        check_output_dir(args.save_maps, "--save-maps")
    detector = Detector.from_checkpoint(Path(args.checkpoint))
    inputs = detector.load_inputs([Path(p) for p in args.inputs])
    scores = detector.score(inputs.x)
    anomalous = detector.is_anomalous(scores)
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["path", "score", "decision"])
        for name, score, flag in zip(inputs.names, scores.tolist(), anomalous.tolist()):
            writer.writerow([name, f"{score:.6g}", "anomalous" if flag else "normal"])
    finally:
        if args.out:
            out.close()
    if args.save_maps:
        save_maps(Path(args.save_maps), inputs.names, inputs.x, detector.reconstruct(inputs.x))
    t = detector.threshold
    print(f"raygan score: {len(scores)} images, {int(anomalous.sum())} anomalous at threshold {t['value']:.6g} "
          f"({t['rule']} on validation, epoch {t['epoch']})", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from raygan.engine.detector import Detector, export_onnx, export_program, onnx_available

    out = Path(args.out)
    if out.suffix != ".pt2":
        raise RayganError(f"--out {out}: torch.export programs are written as .pt2 files")
    if args.onnx and not onnx_available():
        raise RayganError("--onnx needs the onnx extra: pip install 'raygan[onnx]'")
    check_output_file(out, "--out")
    if onnx_available():
        check_output_file(out.with_suffix(".onnx"), "--out (its .onnx beside it)")
    detector = Detector.from_checkpoint(Path(args.checkpoint))
    program = export_program(detector, out)
    written = [str(out)]
    if onnx_available():
        written.append(str(export_onnx(program, out.with_suffix(".onnx"))))
    print(json.dumps({"written": written, **detector.metadata()}))
    return 0


def _cmd_study_list(args: argparse.Namespace) -> int:
    from raygan.study import load_studies

    studies = load_studies()
    for name in studies:
        study = studies.get(name)
        print(f"{name:18s} {study.reproduces}")
        for profile_name, profile in study.profiles.items():
            print(f"{'':18s}   {profile_name}: {profile.description}")
    return 0


def _cmd_study_run(args: argparse.Namespace) -> int:
    from raygan.study import load_studies
    from raygan.cli.study import run

    return run(load_studies().get(args.name), args)


def _cmd_study_best(args: argparse.Namespace) -> int:
    from raygan.analysis.report import best_trial

    print(json.dumps(best_trial(Path(args.study_dir), args.skip_damaged), indent=1))
    return 0


def _cmd_study_export(args: argparse.Namespace) -> int:
    from raygan.analysis.study_export import export_study

    if args.out:
        check_output_dir(args.out, "--out", "the export's folder")
    out = export_study(Path(args.study_dir), Path(args.out) if args.out else None, force=args.force)
    print(f"exported to {out}: study.json, rows/, results.parquet, curves.parquet, report.md, figures/, PROVENANCE.md",
          file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from raygan.analysis.report import report

    if args.figures:
        check_output_dir(args.figures, "--figures")
    sys.stdout.write(report(Path(args.study_dir), args.format, args.skip_damaged, same_score=args.same_score))
    if args.figures:
        from raygan.analysis.figures import write_figures

        for path in write_figures(Path(args.study_dir), Path(args.figures)):
            print(f"figure: {path}", file=sys.stderr)
    return 0


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _StudyRunHelp(argparse.Action):
    """--help of `raygan study run`; after a study's NAME it also lists that study's profiles."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from raygan.cli.study import profiles_epilog
        from raygan.study import load_studies

        studies = load_studies()
        name = getattr(namespace, "name", None)
        if name in studies:
            study = studies.get(name)
            parser.description = study.caption
            parser.epilog = f"{profiles_epilog(study)}\n\n{parser.epilog}"
        else:
            parser.epilog = f"studies: {', '.join(studies)} (their profiles: raygan study run NAME --help)\n\n{parser.epilog}"
        parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from raygan.cli.study import STUDY_ENVIRONMENT, STUDY_EXAMPLES, HelpFormatter, environment

    parser = OneLineParser(
        prog="raygan",
        description="Ray-distributed hyperparameter and ablation studies for GAN-based anomaly detection (AGAD).",
        epilog="\n\n".join((_examples(
            "raygan data describe fashion_mnist               # where the files are, images per class",
            "raygan train --method agad --dataset digits --normal-class 3 --out runs/digits3",
            "raygan study list                                # the studies and their profiles",
            "raygan study run bn_ablation --profile smoke     # = python studies/bn_ablation.py --profile smoke",
            "raygan report ~/raygan-studies/bn_ablation       # the paper's table, ours beside it",
            "raygan score --checkpoint runs/digits3/checkpoints/selected.pt images/ --out scores.csv",
        ), environment(), "documentation: docs/index.md (the CLI reference: docs/reference/cli.md)")),
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
    describe.epilog = "\n\n".join((_examples(
        "raygan data describe fashion_mnist",
        "raygan data describe cifar10 --data-root ~/data --no-download",
    ), environment("RAYGAN_DATA", "RAYGAN_CACHE")))
    describe.set_defaults(handler=_cmd_data_describe)

    split = data_commands.add_parser(
        "split", help="build a one-class split and print its counts (last line: JSON)"
    )
    split.add_argument("name", help="data set name (see `raygan data list`)")
    add_config_arguments(split, DataConfig, skip=("dataset",))
    split.epilog = "\n\n".join((_examples(
        "raygan data split fashion_mnist --protocol normal_class --class 1 --gamma 0.05 --seed 0",
        "raygan data split fashion_mnist --protocol anomaly_class --class 4 --val-fraction 0.2",
    ), environment("RAYGAN_DATA", "RAYGAN_CACHE")))
    split.set_defaults(handler=_cmd_data_split)

    models = commands.add_parser("models", help="registered generators, discriminators, BN strategies, methods")
    models.add_argument("--json", action="store_true", help="print {generator: parameter count} as JSON")
    models.epilog = _examples("raygan models", "raygan models --json")
    models.set_defaults(handler=_cmd_models)

    from raygan.core.config import RunConfig

    train = commands.add_parser(
        "train", help="train one detector; last line of output: JSON result",
        description="Train one detector. Every config field is a flag; --config FILE.json gives a "
        "base that flags override. The last line of standard output is a JSON object.",
    )
    train.add_argument("--config", dest="_config", metavar="FILE", help="JSON config (as in config.json of a run)")
    train.add_argument("--out", dest="_out", metavar="DIR", help="write config.json, metrics.json, checkpoints/ and tensorboard/ here; an existing run there resumes")
    train.add_argument("--normal-class", dest="_normal_class", type=int, metavar="K", help="shorthand: --protocol normal_class --class K")
    train.add_argument("--anomaly-class", dest="_anomaly_class", type=int, metavar="K", help="shorthand: --protocol anomaly_class --class K")
    train.add_argument("--progress", dest="_progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(), help="progress bar per epoch on standard error")
    train.add_argument("--device", dest="_device", default=None, metavar="DEVICE",
                       help="auto (CUDA when available), cpu, cuda or cuda:N; one process without --workers "
                            "(default: auto)")
    ray_group = train.add_argument_group("distributed (Ray Train, DDP)")
    ray_group.add_argument("--workers", dest="_workers", type=int, default=0, metavar="N",
                           help="DDP workers under a Ray TorchTrainer (gloo on CPU, NCCL on GPU); 0: one process, no Ray (default)")
    ray_group.add_argument("--gpus-per-worker", dest="_gpus_per_worker", type=finite_float, default=0.0, metavar="G",
                           help="GPUs per worker; > 0 selects NCCL and CUDA devices (default: 0)")
    ray_group.add_argument("--cpus-per-worker", dest="_cpus_per_worker", type=finite_float, default=1.0, metavar="C",
                           help="CPUs reserved per worker; fractions allowed (default: 1)")
    ray_group.add_argument("--sync-bn", dest="_sync_bn", action="store_true",
                           help="convert BatchNorm to SyncBatchNorm across workers (GPU only)")
    ray_group.add_argument("--address", dest="_address", default=None,
                           help="Ray cluster to join ('auto' for a running one); default: start a local Ray")
    add_config_arguments(train, RunConfig)
    train.epilog = "\n\n".join((_examples(
        "raygan train --method agad --dataset fashion_mnist --normal-class 1 --backbone naive --epochs 3 --out runs/f1",
        "raygan train --config runs/f1/config.json --epochs 15 --out runs/f1-15     # a file, flags override",
        "raygan train --device cuda --method agad --dataset fashion_mnist --normal-class 0 --precision bf16 --out runs/g",
        "raygan train --method agad --dataset fashion_mnist --normal-class 1 --workers 2 --out runs/ddp   # Ray Train DDP",
    ), environment("RAYGAN_DATA", "RAYGAN_CACHE", "RAY_ADDRESS")))
    train.set_defaults(handler=_cmd_train)

    score = commands.add_parser(
        "score", help="score images with a trained run's checkpoint; CSV of path, score, decision",
        description="Score images with a trained detector. Inputs go through the run's own preprocessing "
        "(resize to its image size, its channels, scale to [-1, 1]); the decision uses the threshold chosen "
        "on the run's validation split (Youden's J), stored in the checkpoint.",
    )
    score.add_argument("--checkpoint", required=True, metavar="PATH", help="a run's checkpoints/selected.pt (or last.pt)")
    score.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="PNG/JPEG files, folders of them, or .npy arrays N×H×W / N×H×W×C in the data set's "
                       "own pixel scale (e.g. 0-255; digits: 0-16)")
    score.add_argument("--out", metavar="CSV", help="write the CSV here (default: standard output)")
    score.add_argument("--save-maps", metavar="DIR", help="write each input's reconstruction and |x − x̂| as PNG here")
    score.epilog = _examples(
        "raygan score --checkpoint runs/f1/checkpoints/selected.pt photos/ more.png batch.npy --out scores.csv",
        "raygan score --checkpoint runs/f1/checkpoints/selected.pt images/ --save-maps maps/",
    )
    score.set_defaults(handler=_cmd_score)

    export = commands.add_parser(
        "export", help="export a run's scoring model (images → scores) with torch.export (.pt2), and ONNX",
        description="Write the scoring model (N×C×S×S images in [-1, 1] → N anomaly scores, dynamic batch) "
        "as a torch.export program; with the onnx extra installed, also FILE.onnx beside it.",
    )
    export.add_argument("--checkpoint", required=True, metavar="PATH", help="a run's checkpoints/selected.pt (or last.pt)")
    export.add_argument("--out", required=True, metavar="FILE.pt2", help="the .pt2 file to write")
    export.add_argument("--onnx", action="store_true", help="fail unless the ONNX file can be written too")
    export.epilog = _examples(
        "raygan export --checkpoint runs/f1/checkpoints/selected.pt --out f1.pt2          # + f1.onnx with the onnx extra",
        "python -c \"import torch; m = torch.export.load('f1.pt2').module(); print(m(torch.zeros(2, 1, 32, 32)))\"",
    )
    export.set_defaults(handler=_cmd_export)

    from raygan.cli.study import add_study_arguments

    study = commands.add_parser("study", help="run the paper's tables as Ray Tune studies (list, run, best, export)")
    study_commands = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    study_list = study_commands.add_parser("list", help="the registered studies and their profiles")
    study_list.set_defaults(handler=_cmd_study_list)
    study_run = study_commands.add_parser(
        "run", help="run a study (same flags as python studies/NAME.py)",
        description="Run a study as a Ray Tune experiment; --dry-run prints its trials and cost.",
        add_help=False,
        epilog="\n\n".join((STUDY_EXAMPLES.replace("python studies/bn_ablation.py", "raygan study run bn_ablation")
                             .replace("python studies/hpo.py", "raygan study run hpo"),
                             environment(*STUDY_ENVIRONMENT))),
    )
    study_run.add_argument("-h", "--help", action=_StudyRunHelp,
                           help="show this help and exit; after NAME, also that study's profiles")
    study_run.add_argument("name", help="study name (raygan study list)")
    add_study_arguments(study_run)
    study_run.set_defaults(handler=_cmd_study_run)
    study_best = study_commands.add_parser("best", help="the trial with the best validation AUROC: config and checkpoint")
    study_best.add_argument("study_dir", help="a study directory (<storage>/<study>)")
    study_best.add_argument("--skip-damaged", action="store_true",
                            help="leave out trial records (rows/<key>.json) that cannot be read, naming each")
    study_best.epilog = _examples("raygan study best ~/raygan-studies/hpo",
                                  "raygan train --config ~/raygan-studies/hpo/best_config.json --out runs/best")
    study_best.set_defaults(handler=_cmd_study_best)
    study_export = study_commands.add_parser(
        "export", help="the study's results as a folder to commit: records, Parquet, report, figures, provenance "
                       "(no checkpoints); --resume continues the study from a copy of it")
    study_export.add_argument("study_dir", help="a study directory (<storage>/<study>)")
    study_export.add_argument("--out", default=None, help="the folder (default: results/<study>-<profile>); "
                              "an earlier export of the same study there is updated, anything else is refused")
    study_export.add_argument("--force", action="store_true",
                              help="replace what --out holds even though it is not this study's export (says what "
                                   "it replaces)")
    study_export.epilog = _examples(
        "raygan study export ~/raygan-studies/bn_ablation                    # -> results/bn_ablation-<profile>/",
        "cp -r results/bn_ablation-cpu ~/raygan-studies/bn_ablation && python studies/bn_ablation.py --profile cpu --resume",
    )
    study_export.set_defaults(handler=_cmd_study_export)

    report = commands.add_parser("report", help="a study's results in the paper's table layout, with the paper's numbers")
    report.add_argument("study_dir", help="a study directory (<storage>/<study>)")
    report.add_argument("--format", default="markdown", choices=("markdown", "csv"), help="table format (default: markdown)")
    report.add_argument("--figures", default=None, metavar="DIR",
                        help="also write the paper's figures as PNGs into DIR: AUROC per epoch, score box plots, "
                             "reconstructions, AUROC against γ")
    report.add_argument("--same-score", action="store_true",
                        help="also the table of every method scored by one score, ‖x − G(x)‖₂, from each trial's "
                             "selected checkpoint (kept in <study dir>/same_score.json, so it also works once the "
                             "checkpoints are gone)")
    report.add_argument("--skip-damaged", action="store_true",
                        help="leave out trial records (rows/<key>.json) that cannot be read, naming each, "
                             "instead of stopping at the first")
    report.epilog = _examples(
        "raygan report results/one_class-cpu --same-score",
        "raygan report ~/raygan-studies/bn_ablation --format csv > table.csv",
        "raygan report ~/raygan-studies/bn_ablation --figures figures/",
    )
    report.set_defaults(handler=_cmd_report)
    for sub in _parsers(parser):
        sub.formatter_class = HelpFormatter
    return parser


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def run() -> int:
        try:
            return args.handler(args)
        except ImportError as exc:
            # The core needs neither; only --workers, studies and Tune do (imported lazily there).
            missing = (exc.name or "").split(".")[0]
            if missing not in OPTIONAL_DEPENDENCIES:
                raise
            raise RayganError(f"{args.command} needs {missing}, which is not installed here: "
                              f"{OPTIONAL_DEPENDENCIES[missing]}") from None

    return guarded(run, "raygan: error", lambda: _interrupted_line(args), lambda: _log_dir(args))


def _interrupted_line(args: argparse.Namespace) -> str:
    if args.command == "study" and getattr(args, "study_command", None) == "run":
        return "raygan: interrupted; continue with the same command plus --resume"
    if args.command == "train" and args._out:
        return f"raygan: interrupted; {args._out} keeps the last checkpoint: the same command continues from it"
    return "raygan: interrupted"


def _log_dir(args: argparse.Namespace) -> Path | None:
    """Where a traceback goes: the run's or the study's directory, when the command has one."""
    if args.command == "train" and args._out:
        return Path(args._out)
    if getattr(args, "study_dir", None):
        return Path(args.study_dir)
    if args.command == "study" and getattr(args, "study_command", None) == "run":
        from raygan.study import load_studies
        from raygan.cli.study import options_from
        from raygan.tune.plan import study_dir_for

        return study_dir_for(options_from(args).storage, load_studies().get(args.name))
    return None


if __name__ == "__main__":
    sys.exit(main())
