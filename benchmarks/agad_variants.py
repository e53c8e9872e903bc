"""Which contextual-adversarial variant should AGAD default to? Measured on validation.

The paper does not say whether x̂ enters the second generator pass detached, and the term can
hurt (docs/methods.md). This runs {detach, not} × {shared, advprop} × λ_adcon ∈ {0, 15} on
real Fashion-MNIST (one class normal, γ = 0, naive generator, paper λs otherwise) and prints
validation AUROC per epoch (the choice is made on validation) with test AUROC beside it.
λ_adcon = 0 removes the second pass, so detach and advprop do nothing there: it runs once.

    python benchmarks/agad_variants.py --classes 1 --epochs 5 --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _runs import run_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/agad_variants"))
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                        help="run only these (lambda0, detach-shared-15, detach-advprop-15, flow-shared-15, flow-advprop-15)")
    args = parser.parse_args()

    variants = {"lambda0": (False, "shared", 0.0)}
    for detach in (True, False):
        for bn in ("shared", "advprop"):
            variants[f"{'detach' if detach else 'flow'}-{bn}-15"] = (detach, bn, 15.0)
    if args.variants:
        unknown = sorted(set(args.variants) - set(variants))
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; choose from {list(variants)}")
        variants = {name: variants[name] for name in args.variants}
    jobs = {}
    for c in args.classes:
        for name, (detach, bn, weight) in variants.items():
            jobs[f"{name}-class{c}"] = {
                "method": "agad",
                "data": {"dataset": "fashion_mnist", "class_index": c, "seed": args.seed},
                "model": {"backbone": "naive", "bn_strategy": bn},
                "loss": {"contextual_adversarial_weight": weight, "detach_pseudo_anomaly": detach},
                "train": {"epochs": args.epochs, "batch_size": args.batch_size},
            }
    results = run_many(jobs, args.out, args.parallel, args.threads)

    print(f"\nAGAD variants, Fashion-MNIST, naive G, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}")
    print("| variant | class | val AUROC per epoch | test AUROC per epoch | selected epoch | test AUROC (selected) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | | error: {r['error']} | | | |")
            continue
        variant, cls = name.rsplit("-class", 1)
        val = " ".join(f"{h['auroc_val']:.3f}" for h in r["history"])
        test = " ".join(f"{h['auroc_test']:.3f}" for h in r["history"])
        print(f"| {variant} | {cls} | {val} | {test} | {r['selected_epoch']} | {r['auroc']:.4f} |")
    by_variant: dict[str, list[float]] = {}
    for name, r in results.items():
        if "error" not in r:
            by_variant.setdefault(name.rsplit("-class", 1)[0], []).append(r["auroc_val"])
    print("\nmean validation AUROC at the selected epoch:")
    for variant, values in sorted(by_variant.items(), key=lambda kv: -statistics.mean(kv[1])):
        print(f"  {variant:18s} {statistics.mean(values):.4f}")


if __name__ == "__main__":
    main()
