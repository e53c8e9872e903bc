"""Provenance: the versions and commit that produced a study's results, and the driver log
(``drivers.jsonl``: one line per driver start and end, with its machine and wall time)."""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

from raygan.store.layout import DRIVERS_FILE

VERSION_KEYS = ("torch_version", "ray_version", "optuna_version", "python_version")


@functools.cache
def provenance() -> dict:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "raygan_version": version("raygan"),
        "torch_version": version("torch"),
        "ray_version": version("ray"),
        "optuna_version": version("optuna"),
        "pyarrow_version": version("pyarrow"),
        "python_version": platform.python_version(),
        "git_revision": git_revision(),
    }


def git_revision() -> str | None:
    """The source tree's commit (with '+dirty' for local changes), if raygan runs from a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "") if rev else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log_driver(study_dir: Path, event: str, **extra) -> None:
    """Append a driver event (start / end) with the machine it ran on."""
    entry = {"event": event, "time": time.time(), "hostname": socket.gethostname(), "cpu": cpu_model(),
             "cores": os.cpu_count(), **{k: v for k, v in provenance().items() if k in (*VERSION_KEYS, "git_revision")},
             **extra}
    with open(Path(study_dir) / DRIVERS_FILE, "a") as f:
        f.write(json.dumps(entry) + "\n")


def driver_events(study_dir: Path) -> list[dict]:
    path = Path(study_dir) / DRIVERS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
