"""Trial records: one JSON file per ended trial (``rows/<key>.json``), written the moment it ends.

A record holds the study and its hash, the trial's key, status (finished, stopped, failed) and
error, its factors, its resolved config, the run's metrics and per-epoch history (a search trial
over several instances: the means over its completed instances, and each instance's values), the
node it ran on and its attempts. The records are the study's results: the Parquet files, the
report and --resume all read them, never Tune's own files.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from raygan.core.atomic import write_text
from raygan.core.config import RunConfig
from raygan.core.errors import RayganError
from raygan.engine.run_dir import CONFIG_FILE, METRICS_FILE
from raygan.store.layout import RECORDS_DIR, TRIALS_DIR, record_path, trial_dir
from raygan.store.trial_files import error_message, read_attempts, read_instances, read_json

# What every record has (trial_record writes them all); a file without them is damaged.
RECORD_KEYS = ("study", "study_hash", "trial_key", "status", "factors", "config")


def trial_record(study_dir: Path, plan_info: dict, key: str, trial_id: str, status: str, error: str | None,
                 factors: dict, config: dict, last_result: dict | None) -> dict:
    """The record of a trial that ended with Tune's ``status`` (terminated or failed): a terminated
    trial is finished when it trained every epoch (a search trial over several instances: every
    instance), stopped (by ASHA or racing, or interrupted) when not, and failed when it left an
    error.txt (a deterministic error, not retried)."""
    run_dir = trial_dir(study_dir, key)
    # A search over several instances (plan_info["instances"]: their count): [] until its first is done.
    instances = read_instances(run_dir) if plan_info.get("instances") else None
    if instances is not None:
        # The objective is the mean over the instances done; each instance is in the record.
        metrics = {name: _mean([i.get(name) for i in instances]) for name in ("auroc_val", "auroc", "auroc_last")}
        metrics.update(instances_done=len(instances), instances=plan_info["instances"],
                       train_seconds=math.fsum(i.get("train_seconds") or 0.0 for i in instances))
        resolved = config
    else:
        metrics = read_json(run_dir / METRICS_FILE) or {}
        resolved = read_json(run_dir / CONFIG_FILE) or config
    raised = error_message(run_dir)
    if status == "terminated" and raised is not None:
        status, error = "failed", raised
    elif status == "terminated" and instances is not None:
        status = "finished" if len(instances) == plan_info["instances"] else "stopped"
    elif status == "terminated":
        epochs = RunConfig.from_dict(resolved).train.epochs
        status = "finished" if metrics.get("epochs") == epochs else "stopped"
    if status == "failed" and error is None:
        error = "the trial process died without a message (see the Tune trial's error.txt)"
    last = last_result or {}
    return {
        "study": plan_info["study"],
        "study_hash": plan_info["study_hash"],
        "profile": plan_info["profile"],
        "trial_key": key,
        "trial_id": trial_id,
        "status": status,
        "error": error,
        "factors": factors,
        "config": resolved,
        "metrics": {k: v for k, v in metrics.items() if k not in ("history", "counts")},
        "counts": metrics.get("counts"),
        "history": metrics.get("history", []),
        **({"instances": instances} if instances is not None else {}),
        "node_id": last.get("node_id"),
        "hostname": last.get("hostname"),
        "attempts": read_attempts(run_dir),
        "recorded_at": time.time(),
    }


def _mean(values: list) -> float | None:
    numbers = [float(v) for v in values if v is not None]
    return math.fsum(numbers) / len(numbers) if numbers else None


def write_record(study_dir: Path, record: dict) -> None:
    write_text(record_path(study_dir, record["trial_key"]), json.dumps(record, default=_json_default) + "\n")


def read_record(study_dir: Path, key: str) -> dict | None:
    """The trial's record, or None if it has none (or an unreadable one)."""
    return read_json(record_path(study_dir, key))


def recorded_keys(study_dir: Path) -> set[str]:
    """The trials with a record file, readable or damaged (a damaged one's trial ended too)."""
    return {p.stem for p in (Path(study_dir) / RECORDS_DIR).glob("*.json")}


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def belongs_to_study(record: dict, manifest: dict) -> bool:
    """Whether a trial record is one of the study that ``manifest`` (study.json) describes: the same
    study name, and its hash or one the study had before it grew (``earlier_hashes``). A record of
    another study merged into the table would change its numbers silently."""
    from raygan.store.manifest import study_hashes  # it imports this module

    if record.get("study") != manifest.get("study"):
        return False
    return record.get("study_hash") in study_hashes(manifest)


def scan_records(study_dir: Path) -> tuple[list[dict], list[str]]:
    """Every readable trial record, and one line per damaged record file naming it (a record of
    another study than study.json's counts as damaged: it is never merged); never raises."""
    from raygan.store.manifest import manifest_path, read_manifest  # it imports this module

    directory = Path(study_dir) / RECORDS_DIR
    records, damaged = [], []
    study_file = manifest_path(study_dir)
    manifest = read_manifest(study_file)[0] if study_file.exists() else {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            damaged.append(f"{path} is damaged ({damage_reason(exc)})")
            continue
        missing = [k for k in RECORD_KEYS if k not in record] if isinstance(record, dict) else list(RECORD_KEYS)
        if missing:
            damaged.append(f"{path} is damaged (not a trial record: no {', '.join(missing)})")
        elif manifest and not belongs_to_study(record, manifest):
            damaged.append(f"{path} is a record of another study ({record['study']}, hash {record['study_hash']}; "
                           f"{study_file.name} says {manifest['study']}, hash {manifest['study_hash']}): "
                           f"move it out of {directory}")
        else:
            records.append(record)
    return records, damaged


def damage_reason(exc: Exception) -> str:
    """Why a JSON file could not be read, in a few words."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return getattr(exc, "strerror", None) or str(exc)


def read_records(study_dir: Path, skip_damaged: bool = False) -> list[dict]:
    """Every trial record, for the results: a damaged record file is an error naming it, or with
    ``skip_damaged`` is left out with one line on standard error."""
    records, damaged = scan_records(study_dir)
    if damaged and not skip_damaged:
        raise RayganError(
            f"{damaged[0]}{f' (and {len(damaged) - 1} more)' if len(damaged) > 1 else ''}. Pass --skip-damaged to "
            f"leave it out, or run the study again with --resume, which records a trial that ended again from "
            f"its {TRIALS_DIR}/<key>/{METRICS_FILE}"
        )
    for line in damaged:
        print(f"raygan: skipped {line}", file=sys.stderr)
    return records


def records_with_hash(study_dir: Path, study_hash: str | None) -> list[dict]:
    """The readable records of one run of a study (its hash) in the directory, damaged ones left out."""
    return [r for r in scan_records(study_dir)[0] if r.get("study_hash") == study_hash]
