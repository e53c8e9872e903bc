"""DDP scaling on this machine: 1 process × 2 threads against 2 Ray Train workers × 1 thread.

Both train the same configuration (global batch identical) for the same epochs; images/s is the
training throughput the loop measures (scoring and start-up excluded), wall time is everything.
Repeated runs alternate the two set-ups so machine noise hits both; medians are printed with the
ratio.

    python benchmarks/ddp_scaling.py --dataset fashion_mnist --class 1 --epochs 1 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.engine.loop import train
from raygan.raytrain.ddp import train_with_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--class", dest="class_index", type=int, default=1)
    parser.add_argument("--method", default="agad")
    parser.add_argument("--backbone", default="naive")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    def config(threads: int) -> RunConfig:
        return RunConfig.from_dict({
            "method": args.method,
            "data": {"dataset": args.dataset, "class_index": args.class_index},
            "model": {"backbone": args.backbone},
            "train": {"epochs": args.epochs, "batch_size": args.batch_size, "threads": threads},
        })

    single, ddp = {"ips": [], "wall": []}, {"ips": [], "wall": []}
    for repeat in range(args.repeats):
        started = time.perf_counter()
        result = train(config(threads=2))
        single["wall"].append(time.perf_counter() - started)
        single["ips"].append(result["images_per_s"])
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = train_with_ray(config(threads=1), Path(tmp), workers=2, cpus_per_worker=1, threads=1)
            ddp["wall"].append(time.perf_counter() - started)
            ddp["ips"].append(result["images_per_s"])
        print(f"repeat {repeat}: 1x2 threads {single['ips'][-1]:.1f} img/s, 2x1 workers {ddp['ips'][-1]:.1f} img/s", flush=True)

    s_ips, d_ips = statistics.median(single["ips"]), statistics.median(ddp["ips"])
    print(f"\n{args.method}/{args.backbone}, {args.dataset} class {args.class_index}, global batch {args.batch_size}, "
          f"{args.epochs} epoch(s), median of {args.repeats}")
    print("| set-up | training images/s | wall time per run (s) |")
    print("| --- | --- | --- |")
    print(f"| 1 process x 2 threads | {s_ips:.1f} | {statistics.median(single['wall']):.0f} |")
    print(f"| 2 DDP workers x 1 thread (Ray Train, gloo) | {d_ips:.1f} | {statistics.median(ddp['wall']):.0f} |")
    print(f"| ratio (DDP / single) | {d_ips / s_ips:.2f} | {statistics.median(ddp['wall']) / statistics.median(single['wall']):.2f} |")


if __name__ == "__main__":
    main()
