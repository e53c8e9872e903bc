"""What a study keeps in a trial's directory besides the run's own files: the error of a trial that
raised (error.txt), its attempts (attempts.jsonl), a search trial's per-instance values
(instances.json), and which checkpoints an ended trial keeps."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from raygan.core.atomic import write_text
from raygan.core.errors import RayganError
from raygan.engine.checkpoints import LAST, load_checkpoint
from raygan.engine.run_dir import METRICS_FILE, last_checkpoint, ray_checkpoints, selected_checkpoint
from raygan.store.layout import ATTEMPTS_FILE, ERROR_FILE, INSTANCES_FILE, instance_dir

# What a finished trial keeps of its checkpoints: last.pt (and a DDP trainer's own copy) only
# serves to resume a trial, and a finished one is never trained again; selected.pt is the detector
# (`raygan score`, `raygan study best`, the reconstruction figures).
KEEP_CHECKPOINTS = ("selected", "all", "none")


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_error(run_dir: Path, message: str, details: str) -> None:
    write_text(Path(run_dir) / ERROR_FILE, message + "\n\n" + details)


def clear_error(run_dir: Path) -> None:
    (Path(run_dir) / ERROR_FILE).unlink(missing_ok=True)


def error_message(run_dir: Path) -> str | None:
    """The message of the error the trial raised (error.txt's first paragraph), or None."""
    path = Path(run_dir) / ERROR_FILE
    if path.exists():
        return path.read_text().split("\n\n", 1)[0].strip()
    return None


def log_attempt(run_dir: Path, identity: dict) -> None:
    """Append this attempt (node, host, the epoch its checkpoint resumes from) to attempts.jsonl."""
    last = last_checkpoint(run_dir)
    try:
        start_epoch = load_checkpoint(last)["epoch"] if last.exists() else 0
    except RayganError:
        start_epoch = 0  # damaged: the loop reports it with its own message
    entry = {"node_id": identity["node_id"], "hostname": identity["hostname"], "start_epoch": start_epoch,
             "started_at": time.time()}
    with open(Path(run_dir) / ATTEMPTS_FILE, "a") as f:
        f.write(json.dumps(entry) + "\n")


def read_attempts(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / ATTEMPTS_FILE
    if not path.exists():
        return []
    attempts = []
    for line in path.read_text().splitlines():
        try:
            attempts.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short when its process died mid-append; the others stand
    return attempts


def write_instances(run_dir: Path, done: list[dict]) -> None:
    """A search trial's completed instances so far, in order (one entry per instance)."""
    write_text(Path(run_dir) / INSTANCES_FILE, json.dumps(done, indent=1, default=str) + "\n")


def read_instances(run_dir: Path) -> list[dict]:
    """A search trial's completed instances ([] before its first, or where the file is unreadable)."""
    done = read_json(Path(run_dir) / INSTANCES_FILE)
    return done if isinstance(done, list) else []


def prune_checkpoints(run_dir: Path, keep: str) -> int:
    """Delete what a finished trial's ``keep`` policy drops; return the bytes freed. Only call it once
    the trial's record says finished: resuming an unfinished trial needs its last.pt."""
    if keep == "all":
        return 0
    doomed = [last_checkpoint(run_dir), *ray_checkpoints(run_dir)]
    if keep == "none":
        doomed.append(selected_checkpoint(run_dir))
    freed = 0
    for path in doomed:
        try:
            if path.is_dir():
                freed += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                shutil.rmtree(path)
            elif path.exists():
                freed += path.stat().st_size
                path.unlink()
        except OSError as exc:  # disk use, not correctness: say so and go on
            print(f"raygan: could not delete {path}: {exc.strerror or exc}", file=sys.stderr)
    return freed


def epochs_done(run_dir: Path) -> int | None:
    """Epochs a trial would not train again: its newest checkpoint's (what a resume starts from;
    metrics.json is written after it), or, with none kept, metrics.json's; None if neither."""
    import torch

    checkpoints = [c for c in (last_checkpoint(run_dir), *(d / LAST for d in ray_checkpoints(run_dir)))
                   if c.exists()]
    for path in sorted(checkpoints, key=lambda p: p.stat().st_mtime, reverse=True):
        try:  # mmap: only the epoch is read, not 30-110 MB of weights
            return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
        except Exception:  # noqa: BLE001  (damaged: the loop says so when it resumes)
            continue
    metrics = Path(run_dir) / METRICS_FILE
    return (read_json(metrics) or {}).get("epochs") if metrics.exists() else None


def prune_ended(run_dir: Path, record: dict, keep: str) -> None:
    """prune_checkpoints for a recorded trial: a finished one; of a search trial over several
    instances, every instance it completed once it ended (a stopped one never trains them again)."""
    if "instances" in record:
        if record["status"] in ("finished", "stopped"):
            for instance in record["instances"]:
                prune_checkpoints(instance_dir(run_dir, instance["instance"], instance["key"]), keep)
    elif record["status"] == "finished":
        prune_checkpoints(run_dir, keep)
