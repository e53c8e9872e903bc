"""Detection quality of AGAD against GANomaly, the autoencoder and the imbalance GAN on real Fashion-MNIST.

Protocol: one class normal, the rest anomalous (papers/004), γ = --gamma (default 0) for every
method, the same splits (seed) for every method, a fixed epoch budget on CPU. The imbalance GAN
(papers/003) trains on labelled anomalies and needs --gamma > 0; GANomaly and the autoencoder never
see them whatever γ is. Prints method × class → test AUROC at the
validation-selected epoch, test AUROC at the last epoch, and training images/s. Each run keeps its
own directory under --out, so an interrupted benchmark resumes where it stopped.

A second table scores every method's validation-selected checkpoint with one and the same score,
AGAD's ‖x − G(x)‖₂ (§3.3.3), on the same test images: it separates what a method's training does
to the generator from what its own anomaly score adds (GANomaly scores by latent distance).

    python benchmarks/quality.py --classes 0 1 7 --epochs 5 --batch-size 64
    python benchmarks/quality.py --methods imbalance_gan --classes 1 --gamma 0.1 --epochs 10 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from _runs import run_many

from raygan.detector import Detector
from raygan.errors import RayganError
from raygan.evaluation import detection_metrics
from raygan.loop import load_split_tensors
from raygan.methods.base import reconstruction_l2

METHODS = {
    "agad": {"method": "agad", "model": {"backbone": "naive"}},
    "ganomaly": {"method": "ganomaly"},
    "autoencoder": {"method": "autoencoder"},
    "imbalance_gan": {"method": "imbalance_gan"},
}
DEFAULT_METHODS = ["agad", "ganomaly", "autoencoder"]  # the γ = 0 table of the README


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    parser.add_argument("--dataset", default="fashion_mnist", help="registered data set (digits: a quick offline check)")
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1, 7])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gamma", type=float, default=0.0,
                        help="fraction of labelled anomalies in training (imbalance_gan needs > 0)")
    parser.add_argument("--out", type=Path, default=Path("results/quality"))
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = parser.parse_args()
    if "imbalance_gan" in args.methods and args.gamma <= 0:
        parser.error("imbalance_gan trains on labelled anomalies: add --gamma (papers/003 setting: e.g. 0.1)")

    jobs = {}
    for method in args.methods:
        for c in args.classes:
            data = {"dataset": args.dataset, "class_index": c, "seed": args.seed, "anomaly_fraction": args.gamma}
            cfg = {**METHODS[method], "data": data, "train": {"epochs": args.epochs, "batch_size": args.batch_size}}
            jobs[run_name(method, c, args.gamma)] = cfg
    results = run_many(jobs, args.out, args.parallel, args.threads)

    table(results, args, "auroc", "test AUROC at the validation-selected epoch (last epoch in brackets); training images/s")
    same_score = reconstruction_aurocs(results, args.out, args.threads)
    table(same_score, args, "auroc_reconstruction",
          "the same score for every method, ‖x − G(x)‖₂, test AUROC of each method's validation-selected checkpoint")


def run_name(method: str, class_index: int, gamma: float) -> str:
    return f"{method}-class{class_index}" + (f"-gamma{gamma:g}" if gamma > 0 else "")  # γ = 0: the old names


def reconstruction_aurocs(results: dict[str, dict], out: Path, threads: int) -> dict[str, dict]:
    """Test AUROC of ‖x − G(x)‖₂ from each finished run's selected checkpoint."""
    torch.set_num_threads(threads)
    splits: dict[str, object] = {}
    scored = {}
    for name, r in results.items():
        if "error" in r:
            scored[name] = r
            continue
        try:
            detector = Detector.from_checkpoint(out / name / "checkpoints" / "selected.pt")
        except RayganError as error:  # e.g. a run directory from before thresholds were stored
            print(f"  {name}: not rescored: {error}", file=sys.stderr)
            scored[name] = {"error": str(error)}
            continue
        data_key = json.dumps(detector.method.cfg.data.to_dict(), sort_keys=True)
        if data_key not in splits:  # every method of a class shares the split
            splits[data_key] = load_split_tensors(detector.method.cfg)[0]
        tensors = splits[data_key]
        scores = reconstruction_l2(tensors.test_x, detector.reconstruct(tensors.test_x))
        scored[name] = {"auroc_reconstruction": detection_metrics(scores, tensors.test_y)["auroc"]}
    return scored


def table(results: dict[str, dict], args: argparse.Namespace, key: str, title: str) -> None:
    print(f"\n{args.dataset}, normal_class protocol, γ = {args.gamma:g}, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}")
    print(title)
    timed = key == "auroc"  # the rescoring table has no training speed to show
    print("| method | " + " | ".join(f"class {c}" for c in args.classes) + " | mean |" + (" images/s |" if timed else ""))
    print("| --- |" + " --- |" * (len(args.classes) + 1 + timed))
    for method in args.methods:
        cells, aurocs, speeds = [], [], []
        for c in args.classes:
            r = results[run_name(method, c, args.gamma)]
            if "error" in r:
                cells.append("error")
                continue
            if timed:
                cells.append(f"{r[key]:.4f} ({r['auroc_last']:.4f})")
                speeds.append(r["images_per_s"])
            else:
                cells.append(f"{r[key]:.4f}")
            aurocs.append(r[key])
        mean = f"{statistics.mean(aurocs):.4f}" if aurocs else "-"
        speed = f"{statistics.median(speeds):.0f}" if speeds else "-"
        print(f"| {method} | " + " | ".join(cells) + f" | {mean} |" + (f" {speed} |" if timed else ""))


if __name__ == "__main__":
    main()
