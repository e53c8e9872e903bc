"""GPU benchmark: throughput per method × backbone, one paper-protocol trial, packing, determinism.

One command, at most 6 minutes on one GPU; `--quick` runs the same code on CPU with tiny settings
(digits, naive G, 1 epoch) so the suite tests it. Needs PyTorch and raygan's core only (no Ray, no
Optuna), and the Fashion-MNIST IDX files (--data-root). Writes a device profile (JSON) of the
measured per-trial figures, which `raygan study run NAME --dry-run --device-profile FILE` reads.

    python benchmarks/gpu.py --data-root /data/fashion-mnist --profile-out h200.json
    python benchmarks/gpu.py --quick --device cpu --profile-out /tmp/cpu.json

1. per method × backbone at batch 256, fp32 and bf16: training images/s, scoring ms/image at batch
   1 and 256, achieved FLOP/s (FlopCounterMode) against a matmul of the same precision measured in
   the same run (the device's practical peak);
2. one bn_ablation paper-protocol trial (AGAD, UNet, one Fashion-MNIST class, γ 0.1, 15 epochs,
   batch 256, validation and test scored every epoch, checkpoints and TensorBoard written) as its
   own process: wall seconds split into start-up, data loading, training, evaluation;
3. packing: K = 1, 2, 4, 8 such trials at once as separate processes on the one device (what
   `--gpus-per-trial 1/K` does under Tune): trials per hour in total, peak memory per process;
4. the same seed in every one of those processes: same test AUROC, or the largest difference.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's raygan, also on a box where it is not installed

from raygan.compute.devices import resolve_device  # noqa: E402
from raygan.core.config import RunConfig  # noqa: E402
from raygan.methods import build_method  # noqa: E402

ROWS = ["agad:naive", "agad:unet", "agad:unetpp", "ganomaly:ganomaly", "skip_ganomaly:unet", "autoencoder:naive"]
DEFAULT_DATA_ROOT = "/usr/share/datasets/fashion-mnist"
PROFILE_VERSION = 1


def paper_trial(data_root: str | None) -> dict:
    """bn_ablation's paper profile (papers/004 Table 5), one cell: AGAD, UNet, AdvProp, γ 0.1, class 0."""
    return {"method": "agad", "model": {"backbone": "unet", "bn_strategy": "advprop"},
            "data": {"dataset": "fashion_mnist", "class_index": 0, "anomaly_fraction": 0.1,
                     **({"data_root": data_root} if data_root else {})},
            "train": {"epochs": 15, "batch_size": 256}}


def quick_trial() -> dict:
    return {"method": "agad", "model": {"backbone": "naive", "latent_size": 16},
            "data": {"dataset": "digits", "class_index": 3, "anomaly_fraction": 0.1},
            "train": {"epochs": 1, "batch_size": 64}}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` (after one warm-up call), the device drained around each call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_flops(device: torch.device, precision: str, n: int) -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, device, 5)


def throughput(device: torch.device, rows: list[str], batch_size: int, repeats: int, matmul_n: int) -> tuple[list[dict], dict]:
    if device.type == "cuda":  # what a run does under fp32 (raygan.compute.devices.configure_backends)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    peaks = {p: matmul_flops(device, p, matmul_n) for p in ("fp32", "bf16")}
    out = []
    for row in rows:
        method_name, backbone = row.split(":")
        for precision in ("fp32", "bf16"):
            cfg = RunConfig.from_dict({"method": method_name, "model": {"backbone": backbone},
                                       "train": {"batch_size": batch_size, "precision": precision}})
            torch.manual_seed(0)
            method = build_method(cfg, channels=1, image_size=32, device=device)
            x = torch.rand(batch_size, 1, 32, 32, device=device) * 2 - 1
            y = torch.zeros(batch_size, dtype=torch.long)
            if method.uses_labelled_anomalies:
                y[batch_size - max(1, batch_size // 8):] = 1  # as the sampler: normals first
            method.train_mode()
            method.train_step(x, y)
            with FlopCounterMode(display=False) as counter:
                method.train_step(x, y)
            flops = counter.get_total_flops()
            step = timed(lambda: method.train_step(x, y), device, repeats)
            score_ms = {}
            for b in (1, 256):
                xs = torch.rand(b, 1, 32, 32, device=device) * 2 - 1
                score_ms[b] = timed(lambda: method.score(xs, batch_size=b), device, repeats if b > 1 else 3 * repeats) / b * 1e3
            achieved = flops / step
            out.append({"row": row, "precision": precision, "train_images_per_s": batch_size / step,
                        "score_ms_per_image_b1": score_ms[1], "score_ms_per_image_b256": score_ms[256],
                        "flop_per_step": flops, "achieved_flop_per_s": achieved,
                        "fraction_of_matmul": achieved / peaks[precision]})
            print(f"{row:20s} {precision:5s} {batch_size / step:12.1f} {score_ms[1]:10.3f} {score_ms[256]:10.4f} "
                  f"{achieved / 1e9:10.1f} {achieved / peaks[precision]:8.3f}", flush=True)
            del method
    return out, peaks


# --- one trial, as its own process ---------------------------------------------------------------

def trial_worker(config: dict, device_spec: str, out_dir: str, started_at: float) -> None:
    """Run one trial in this process and print its timings as one JSON line."""
    entered = time.time()
    from raygan.engine.loop import load_split_tensors, train

    device = resolve_device(device_spec)
    cfg = RunConfig.from_dict(config)
    t0 = time.perf_counter()
    tensors, _ = load_split_tensors(cfg)
    data_s = time.perf_counter() - t0
    result = train(cfg, out_dir=Path(out_dir), tensors=tensors, device=device)
    synchronize(device)
    total = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # CPU: peak RSS
    print(json.dumps({
        "startup_s": entered - started_at,  # interpreter, torch and raygan imports
        "data_s": data_s, "train_s": result["train_seconds"],
        # scoring validation and test every epoch, plus model build, checkpoints and TensorBoard
        "eval_s": total - data_s - result["train_seconds"],
        "in_process_s": total, "epochs": result["epochs"], "auroc": result["auroc"],
        "auroc_last": result["auroc_last"], "peak_memory_bytes": peak,
        "train_images_per_s": result["images_per_s"],
    }), flush=True)


def run_packed(k: int, config: dict, device_spec: str, work: Path, threads: int | None) -> dict:
    """K trials of the same config at once, each its own process; total trials per hour."""
    config = json.loads(json.dumps(config))
    if threads:
        config["train"]["threads"] = threads
    procs = []
    started = time.time()
    for i in range(k):
        command = [sys.executable, __file__, "--trial-worker", json.dumps(config), "--device", device_spec,
                   "--worker-out", str(work / f"k{k}_{i}"), "--started-at", repr(time.time())]
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"gpu.py: a packed trial failed (K={k}): {stderr.strip().splitlines()[-1:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    wall = time.time() - started
    return {"k": k, "wall_s": wall, "trials_per_hour": k * 3600 / wall,
            "peak_memory_mb": [r["peak_memory_bytes"] / 2**20 for r in results], "trials": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings (digits, naive G, 1 epoch, K = 1, 2): a CPU check")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--data-root", default=None, help=f"Fashion-MNIST IDX files (default: {DEFAULT_DATA_ROOT} if there)")
    parser.add_argument("--rows", nargs="+", default=None, help="method:backbone pairs for part 1 (default: all six)")
    parser.add_argument("--packing", nargs="+", type=int, default=None, help="K values for part 3 (default: 1 2 4 8)")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip larger K once this much time is spent")
    parser.add_argument("--profile-out", default="device_profile.json", help="the device profile (JSON) to write")
    parser.add_argument("--trial-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--started-at", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial_worker:
        trial_worker(json.loads(args.trial_worker), args.device, args.worker_out, args.started_at)
        return

    began = time.time()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    quick = args.quick
    rows = args.rows or (["agad:naive"] if quick else ROWS)
    ks = args.packing or ([1, 2] if quick else [1, 2, 4, 8])
    data_root = args.data_root or (DEFAULT_DATA_ROOT if Path(DEFAULT_DATA_ROOT).is_dir() else None)
    config = quick_trial() if quick else paper_trial(data_root)
    print(f"device: {name}; torch {torch.__version__}; {'quick' if quick else 'full'} run")

    print("\n1. training and scoring (batch %d)" % (16 if quick else 256))
    print(f"{'method:backbone':20s} {'prec':5s} {'train img/s':>12s} {'ms/img b1':>10s} {'ms/img b256':>10s} {'GFLOP/s':>10s} {'of matmul':>8s}")
    rows_out, peaks = throughput(device, rows, 16 if quick else 256, 1 if quick else 10, 512 if quick else 8192)
    print("matmul reference: " + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peaks.items()))

    print(f"\n2.-3. {'a digits trial (quick)' if quick else 'bn_ablation paper trial'} alone and packed K at once")
    packing = []
    with tempfile.TemporaryDirectory(prefix="raygan-gpu-") as work:
        for k in ks:
            if packing and time.time() - began + packing[-1]["wall_s"] * 1.5 > args.budget_s:
                print(f"K={k}: skipped (budget {args.budget_s:.0f} s)")
                continue
            # on CPU every process gets one thread, as Tune trials do with --cpus-per-trial 1
            result = run_packed(k, config, args.device, Path(work), 1 if device.type == "cpu" else None)
            packing.append(result)
            first = result["trials"][0]
            print(f"K={k}: {result['wall_s']:.1f} s wall, {result['trials_per_hour']:.0f} trials/h; one trial: "
                  f"start-up {first['startup_s']:.1f} s, data {first['data_s']:.1f} s, training {first['train_s']:.1f} s, "
                  f"evaluation {first['eval_s']:.1f} s; peak memory per process {max(result['peak_memory_mb']):.0f} MB", flush=True)
    alone = packing[0]["trials"][0]
    best = max(packing, key=lambda p: p["trials_per_hour"])
    aurocs = [t["auroc"] for p in packing for t in p["trials"]]
    spread = max(aurocs) - min(aurocs)
    print(f"best packing: K={best['k']}, {best['trials_per_hour'] / packing[0]['trials_per_hour']:.2f}x the trials/h of one at a time")
    print(f"\n4. same seed in {len(aurocs)} processes: test AUROC {min(aurocs):.6f}..{max(aurocs):.6f} "
          f"({'identical' if spread == 0 else f'differ by up to {spread:.2g}'})")
    profile = {
        "version": PROFILE_VERSION, "device": name, "device_type": device.type, "torch": torch.__version__,
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "quick": quick,
        "matmul_flop_per_s": peaks, "throughput": rows_out,
        "trial": {"config": config, **{k: alone[k] for k in ("startup_s", "data_s", "train_s", "eval_s", "epochs", "auroc")}},
        "packing": [{k: p[k] for k in ("k", "wall_s", "trials_per_hour", "peak_memory_mb")} for p in packing],
        "best_packing": {"k": best["k"], "trials_per_hour": best["trials_per_hour"],
                         "speedup_over_one": best["trials_per_hour"] / packing[0]["trials_per_hour"]},
        "same_seed_auroc_spread": spread,
        "benchmark_seconds": time.time() - began,
    }
    Path(args.profile_out).write_text(json.dumps(profile, indent=1) + "\n")
    print(f"\ndevice profile: {args.profile_out} ({time.time() - began:.0f} s in all)")


if __name__ == "__main__":
    main()
