"""Results: a study's trial records as Parquet, readable without raygan (pandas, DuckDB, pyarrow).

``results.parquet`` has one row per finished, stopped or failed trial: the study and its hash, the
trial, its status and error message, its factors (``factor.<name>``), every config field (dotted
names, e.g. ``model.bn_strategy``), the seed, the metrics (test AUROC at the validation-selected
epoch and at the last epoch, validation AUROC, selected epoch, training time, images/s) and
provenance (package and library versions, git revision, node). ``curves.parquet`` has one row
per trial and epoch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raygan.core.atomic import atomic_path
from raygan.core.dicts import flatten
from raygan.core.errors import RayganError, first_line
from raygan.engine.latency import BATCH_SIZES, metric_name
from raygan.store.layout import CURVES_FILE, RECORDS_DIR, RESULTS_FILE
from raygan.store.manifest import saved_manifest, study_info
from raygan.store.provenance import provenance
from raygan.store.records import belongs_to_study, read_records

METRICS = ("auroc", "ap", "auroc_val", "auroc_last", "ap_last", "selected_epoch", "epochs",
           "auroc_best_test_optimistic", "train_seconds", "images_per_s", "params_generator",
           "params_discriminator", "discriminator_resets", *map(metric_name, BATCH_SIZES))


def result_row(record: dict) -> dict:
    metrics = record.get("metrics") or {}
    row = {
        "study": record["study"],
        "study_hash": record["study_hash"],
        "profile": record["profile"],
        "trial_key": record["trial_key"],
        "trial_id": record["trial_id"],
        "status": record["status"],
        "error": record["error"],
        "seed": record["config"]["data"]["seed"],
        **flatten(record["factors"], "factor."),
        **flatten(record["config"]),
        **{m: metrics.get(m) for m in METRICS},
        **provenance(),
        "node_id": record.get("node_id"),
        "hostname": record.get("hostname"),
        "recorded_at": record.get("recorded_at"),
    }
    return {k: _plain(v) for k, v in row.items()}


def _plain(value):
    # Parquet columns need one type: lists (none today) and other objects become JSON text.
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _table(rows: list[dict]) -> pa.Table:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    data = {c: [row.get(c) for row in rows] for c in columns}
    arrays = {}
    for name, values in data.items():
        kinds = {type(v) for v in values if v is not None}
        if kinds == {int, float}:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1:
            values = [None if v is None else str(v) for v in values]
        arrays[name] = pa.array(values)
    return pa.table(arrays)


def write_results(study_dir: Path, skip_damaged: bool = False) -> tuple[Path, int]:
    """(Re)write results.parquet and curves.parquet from the study's trial records."""
    records = read_records(study_dir, skip_damaged)
    rows = [result_row(r) for r in records]
    curves = []
    for r in records:
        for h in r.get("history") or []:
            curves.append({"study": r["study"], "trial_key": r["trial_key"], "status": r["status"],
                           **{k: v for k, v in h.items() if isinstance(v, (int, float, str, bool)) or v is None}})
    if skip_damaged:
        kept_rows, kept_curves = _kept_from_parquet(study_dir, {r["trial_key"] for r in records})
        rows += kept_rows
        curves += kept_curves
    if not rows:
        raise RayganError(f"{study_dir} has no finished trials yet (no records under {study_dir / RECORDS_DIR})")
    with atomic_path(study_dir / RESULTS_FILE) as tmp:
        pq.write_table(_table(rows), tmp)
    if curves:
        with atomic_path(study_dir / CURVES_FILE) as tmp:
            pq.write_table(_table(curves), tmp)
    return study_dir / RESULTS_FILE, len(rows)


def _kept_from_parquet(study_dir: Path, readable: set[str]) -> tuple[list[dict], list[dict]]:
    """Rows (and curves) of trials whose record file is damaged but whose row the Parquet files
    still hold: in an export, or once checkpoints are gone, that row is the trial's only intact
    copy, so skipping the damaged record must not drop it."""
    damaged = {p.stem for p in (study_dir / RECORDS_DIR).glob("*.json")} - readable
    if not damaged or not (study_dir / RESULTS_FILE).exists():
        return [], []
    manifest = saved_manifest(study_dir)
    try:
        table = pq.read_table(study_dir / RESULTS_FILE).to_pylist()
        curves = pq.read_table(study_dir / CURVES_FILE).to_pylist() if (study_dir / CURVES_FILE).exists() else []
    except (pa.ArrowException, OSError):
        return [], []
    rows = [r for r in table if r.get("trial_key") in damaged and belongs_to_study(r, manifest)]
    kept = {r["trial_key"] for r in rows}
    for key in sorted(kept):
        print(f"raygan: kept trial {key} from {RESULTS_FILE}: its record {RECORDS_DIR}/{key}.json is damaged, and the "
              f"Parquet row is its intact copy", file=sys.stderr)
    return rows, [c for c in curves if c.get("trial_key") in kept]


def read_results(study_dir: Path, skip_damaged: bool = False) -> tuple[dict, list[dict]]:
    """The study manifest and its result rows (as dicts); a clear error for a wrong directory or a
    damaged file. The Parquet files are derived from ``rows/``: missing, stale or unreadable ones
    are written again from the records."""
    study_dir = Path(study_dir).expanduser()
    info = study_info(study_dir)
    path = study_dir / RESULTS_FILE
    if skip_damaged or not path.exists() or _stale(study_dir, path):
        write_results(study_dir, skip_damaged)
        return info, pq.read_table(path).to_pylist()
    for name in (RESULTS_FILE, CURVES_FILE):  # the figures read curves.parquet
        try:
            if (study_dir / name).exists():
                pq.read_table(study_dir / name)
        except (pa.ArrowException, OSError) as exc:
            print(f"raygan: {study_dir / name} is unreadable ({first_line(exc)}); writing the Parquet files "
                  f"again from {study_dir / RECORDS_DIR}", file=sys.stderr)
            write_results(study_dir)
            break
    return info, pq.read_table(path).to_pylist()


def _stale(study_dir: Path, path: Path) -> bool:
    """Whether rows/ holds records the Parquet file does not: compared by trial and record time,
    not by file times, which a git checkout or a copy resets."""
    if not (study_dir / RECORDS_DIR).is_dir():
        return False
    recorded = {(r["trial_key"], r.get("recorded_at")) for r in read_records(study_dir)}
    try:
        table = pq.read_table(path, columns=["trial_key", "recorded_at"]).to_pylist()
    except (pa.ArrowException, OSError):
        return False  # unreadable: read_results says so and writes it again
    return recorded != {(r["trial_key"], r.get("recorded_at")) for r in table}
