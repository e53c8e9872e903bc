"""Detection quality of AGAD against GANomaly, the autoencoder and the imbalance GAN on real Fashion-MNIST.

Protocol: one class normal, the rest anomalous (papers/004), γ = --gamma (default 0) for every
method, the same splits (seed) for every method, a fixed epoch budget on CPU. The imbalance GAN
(papers/003) trains on labelled anomalies and needs --gamma > 0; GANomaly and the autoencoder never
see them whatever γ is. Prints method × class → test AUROC at the
validation-selected epoch, test AUROC at the last epoch, and training images/s. Each run keeps its
own directory under --out, so an interrupted benchmark resumes where it stopped.

    python benchmarks/quality.py --classes 0 1 7 --epochs 5 --batch-size 64
    python benchmarks/quality.py --methods imbalance_gan --classes 1 --gamma 0.1 --epochs 10 --batch-size 128
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _runs import run_many

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
    suffix = f"-gamma{args.gamma:g}" if args.gamma > 0 else ""  # γ = 0 keeps the old run names

    jobs = {}
    for method in args.methods:
        for c in args.classes:
            data = {"dataset": "fashion_mnist", "class_index": c, "seed": args.seed, "anomaly_fraction": args.gamma}
            cfg = {**METHODS[method], "data": data, "train": {"epochs": args.epochs, "batch_size": args.batch_size}}
            jobs[f"{method}-class{c}{suffix}"] = cfg
    results = run_many(jobs, args.out, args.parallel, args.threads)

    print(f"\nFashion-MNIST, normal_class protocol, γ = {args.gamma:g}, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}")
    print("test AUROC at the validation-selected epoch (last epoch in brackets); training images/s")
    print("| method | " + " | ".join(f"class {c}" for c in args.classes) + " | mean | images/s |")
    print("| --- |" + " --- |" * (len(args.classes) + 2))
    for method in args.methods:
        cells, aurocs, speeds = [], [], []
        for c in args.classes:
            r = results[f"{method}-class{c}{suffix}"]
            if "error" in r:
                cells.append("error")
                continue
            cells.append(f"{r['auroc']:.4f} ({r['auroc_last']:.4f})")
            aurocs.append(r["auroc"])
            speeds.append(r["images_per_s"])
        mean = f"{statistics.mean(aurocs):.4f}" if aurocs else "-"
        speed = f"{statistics.median(speeds):.0f}" if speeds else "-"
        print(f"| {method} | " + " | ".join(cells) + f" | {mean} | {speed} |")


if __name__ == "__main__":
    main()
