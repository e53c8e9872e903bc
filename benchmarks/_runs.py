"""Run many `raygan train` jobs as subprocesses (resumable: each has its own --out directory)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(name: str, config: dict, out_root: Path, threads: int) -> dict:
    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(config))
    config.setdefault("train", {})["threads"] = threads
    (out / "request.json").write_text(json.dumps(config, indent=2))
    command = [sys.executable, "-m", "raygan", "train", "--config", str(out / "request.json"), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    (out / "stderr.log").write_text(result.stderr)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"name": name, "error": tail[0]}
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    summary["history"] = json.loads((out / "metrics.json").read_text())["history"]
    summary["name"] = name
    return summary


def run_many(jobs: dict[str, dict], out_root: Path, parallel: int, threads: int) -> dict[str, dict]:
    """Run every named config; ``parallel`` processes at once with ``threads`` torch threads each."""
    out_root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {name: pool.submit(run_one, name, cfg, out_root, threads) for name, cfg in jobs.items()}
        results = {}
        for name, future in futures.items():
            results[name] = future.result()
            r = results[name]
            status = r.get("error") or f"test AUROC {r['auroc']:.4f} (epoch {r['selected_epoch']})"
            print(f"  done {name}: {status}", file=sys.stderr, flush=True)
    return results
