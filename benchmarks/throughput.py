"""Training and scoring throughput of every method × backbone on this CPU.

Prints, per method × backbone: training images/s, scoring ms/image at batch 1 and at batch 256,
model FLOPs per image per training step (torch.utils.flop_counter.FlopCounterMode), and the
achieved FLOP rate as a fraction of the fp32 matmul rate measured in the same run (interleaved,
medians of several repeats, because the machine is shared and noisy).

    python benchmarks/throughput.py                      # all rows, batch 256
    python benchmarks/throughput.py --rows agad:naive --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from raygan.core.config import RunConfig
from raygan.methods import build_method

ROWS = ["agad:naive", "agad:unet", "agad:unetpp", "ganomaly:ganomaly", "skip_ganomaly:unet", "autoencoder:naive"]


def matmul_gflops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = time.perf_counter()
    a @ b
    return 2 * n**3 / (time.perf_counter() - started) / 1e9


def build(method: str, backbone: str, batch_size: int):
    cfg = RunConfig.from_dict({"method": method, "model": {"backbone": backbone}, "train": {"batch_size": batch_size}})
    torch.manual_seed(0)
    return build_method(cfg, channels=1, image_size=32)


def batch(batch_size: int, anomalies: int):
    x = torch.rand(batch_size, 1, 32, 32) * 2 - 1
    y = torch.zeros(batch_size, dtype=torch.long)
    y[:anomalies] = 1
    return x, y


def step_flops(method, x, y) -> float:
    with FlopCounterMode(display=False) as counter:
        method.train_step(x, y)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=ROWS, help="method:backbone pairs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps (median)")
    parser.add_argument("--anomalies", type=int, default=0, help="labelled anomalies per training batch (agad)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    header = f"{'method:backbone':22s} {'train img/s':>11s} {'score ms/img b1':>15s} {'score ms/img b256':>17s} {'GFLOP/img/step':>14s} {'GFLOP/s':>8s} {'matmul GFLOP/s':>14s} {'fraction':>8s}"
    print(header)
    for row in args.rows:
        method_name, backbone = row.split(":")
        method = build(method_name, backbone, args.batch_size)
        x, y = batch(args.batch_size, args.anomalies if method.uses_labelled_anomalies else 0)
        method.train_mode()
        method.train_step(x, y)  # warm-up: oneDNN primitive creation
        flops = step_flops(method, x, y)
        step_seconds, matmul = [], []
        for _ in range(args.repeats):
            matmul.append(matmul_gflops())
            started = time.perf_counter()
            method.train_step(x, y)
            step_seconds.append(time.perf_counter() - started)
        step = statistics.median(step_seconds)
        rate = flops / step / 1e9
        peak = statistics.median(matmul)
        score_ms = {}
        for b in (1, 256):
            xs = torch.rand(b, 1, 32, 32) * 2 - 1
            method.score(xs, batch_size=b)
            times = []
            for _ in range(args.repeats if b > 1 else 20):
                started = time.perf_counter()
                method.score(xs, batch_size=b)
                times.append(time.perf_counter() - started)
            score_ms[b] = statistics.median(times) / b * 1000
        print(
            f"{row:22s} {args.batch_size / step:11.1f} {score_ms[1]:15.2f} {score_ms[256]:17.3f} "
            f"{flops / args.batch_size / 1e9:14.3f} {rate:8.1f} {peak:14.1f} {rate / peak:8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
