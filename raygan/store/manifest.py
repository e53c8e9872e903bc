"""study.json: what a study directory holds a run of (study, profile, hash, trial list, options)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from raygan.core.atomic import write_text
from raygan.core.errors import RayganError
from raygan.store.layout import STUDY_FILE, TUNE_DIR
from raygan.store.records import damage_reason
from raygan.store.trial_files import read_json


def manifest_path(study_dir: Path) -> Path:
    return Path(study_dir) / STUDY_FILE


def read_manifest(path: Path) -> tuple[dict, str | None]:
    """study.json, or ({}, a line naming the file and what is wrong with it)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"{path} is damaged ({damage_reason(exc)})"
    if not isinstance(manifest, dict) or "study" not in manifest or "study_hash" not in manifest:
        return {}, f"{path} is damaged (not a study description: no study or study_hash)"
    return manifest, None


def saved_manifest(study_dir: Path) -> dict:
    """study.json as far as it reads ({} when missing or damaged): for what a resume compares."""
    return read_json(manifest_path(study_dir)) or {}


def study_info(study_dir: Path) -> dict:
    """The manifest of the study directory a user named; a clear error for a wrong directory or a
    damaged manifest."""
    study_dir = Path(study_dir).expanduser()
    path = manifest_path(study_dir)
    if not path.exists():
        raise RayganError(
            f"{study_dir} is not a study directory (no {STUDY_FILE}); pass the directory a study run "
            f"printed, e.g. ~/raygan-studies/bn_ablation"
        )
    info, damage = read_manifest(path)
    if damage is not None:
        raise RayganError(f"{damage}; run the study again with the same flags and --resume to write it again")
    return info


def table_row_factors(info: dict) -> list[str]:
    """The factors a study's paper table puts in rows, the dataset first (study.json's "rows")."""
    return info.get("rows") or ["dataset"]


def write_manifest(study_dir: Path, manifest: dict) -> None:
    """Write study.json unless a readable one is there (a damaged one is written again, saying so)."""
    path = manifest_path(study_dir)
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    damaged = path.exists() and read_manifest(path)[1] is not None
    if not path.exists() or damaged:
        write_text(path, json.dumps(manifest, indent=1) + "\n")
        if damaged:
            print(f"raygan: {path} was damaged; written again from this command's study", file=sys.stderr)


def study_hashes(manifest: dict) -> set[str]:
    """The hashes a study directory's records may carry: its own, and those of the smaller grids it
    grew from (their records are this study's trials)."""
    return {manifest.get("study_hash"), *manifest.get("earlier_hashes", ())} - {None}


def write_grown_manifest(study_dir: Path, manifest: dict, saved: dict) -> Path | None:
    """study.json of a grid grown from ``saved`` (naming the hashes it grew from). The smaller grid's
    Tune experiment, which a restore would run as it was, is set aside as tune-<its hash>/; returns
    where, if there was one."""
    tune_dir, aside = Path(study_dir) / TUNE_DIR, Path(study_dir) / f"{TUNE_DIR}-{saved['study_hash']}"
    moved = tune_dir.exists()
    if moved:
        tune_dir.rename(aside)
    write_text(manifest_path(study_dir), json.dumps({**manifest, "earlier_hashes": sorted(study_hashes(saved))},
                                                    indent=1) + "\n")
    return aside if moved else None
