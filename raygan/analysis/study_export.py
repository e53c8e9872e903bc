"""`raygan study export`: a study's results as a folder to commit (``results/<study>-<profile>/``).

What is kept: ``study.json`` and ``rows/`` (so that ``--resume`` can continue the study from the
folder on another machine or in a later session: finished trials are not trained again),
``results.parquet`` and ``curves.parquet``, ``same_score.json`` and ``optuna.db`` where the study has
them, the report as ``report.md`` (with ``--same-score`` where the study compares methods), the
figures under ``figures/`` and ``PROVENANCE.md``: the commits, machines, library versions and wall
time that produced it. Never checkpoints, TensorBoard files or Tune's state.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from raygan.analysis.figures import write_figures
from raygan.analysis.parquet import read_results
from raygan.analysis.report import report
from raygan.core.errors import RayganError
from raygan.store.layout import EXPORTED_FILES, RECORDS_DIR, STUDY_FILE
from raygan.store.manifest import read_manifest
from raygan.store.provenance import VERSION_KEYS, driver_events
from raygan.store.records import read_records

# The export folder's own files, besides what it keeps of the study directory
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
PROVENANCE_FILE = "PROVENANCE.md"


def driver_wall_seconds(events: list[dict], records: list[dict]) -> tuple[float, int, float | None]:
    """(wall seconds the study's drivers ran, number of driver runs, when the last one stopped). A
    driver that was killed has no end: its span ends at the last trial it recorded (a lower bound:
    the trials it was running when killed are not counted)."""
    starts = [e for e in events if e["event"] == "start"]
    ends = sorted(e["time"] for e in events if e["event"] == "end")
    recorded = sorted(r.get("recorded_at") or 0.0 for r in records)
    total, last = 0.0, None
    for i, start in enumerate(starts):
        following = starts[i + 1]["time"] if i + 1 < len(starts) else float("inf")
        end = next((t for t in ends if start["time"] <= t < following), None)
        if end is None:  # killed: up to its last record before the next driver
            inside = [t for t in recorded if start["time"] <= t < following]
            end = inside[-1] if inside else start["time"]
        total += end - start["time"]
        last = end if last is None else max(last, end)
    return total, len(starts), last


# What an export writes: replaced on every export of the same study.
WRITTEN = (*EXPORTED_FILES, REPORT_FILE, PROVENANCE_FILE, RECORDS_DIR, FIGURES_DIR)


def export_study(study_dir: Path, out: Path | None = None, repo_results: Path | None = None,
                 force: bool = False) -> Path:
    study_dir = Path(study_dir).expanduser().resolve()
    info, rows = read_results(study_dir)  # also rebuilds the Parquet files from rows/ if stale
    out = Path(out) if out is not None else (repo_results or Path("results")) / f"{info['study']}-{info['profile']}"
    if out.resolve() == study_dir:
        raise RayganError(f"--out {out} is the study directory itself; export to another folder")
    if out.exists() and not out.is_dir():
        raise RayganError(f"--out {out} is a file; the export is a folder (give a new or empty one)")
    check_target(out, info, force)
    out.mkdir(parents=True, exist_ok=True)
    compares_methods = any(r.get("factor.method") for r in rows)
    # the report first: it writes same_score.json and best_config.json into the study directory
    (out / REPORT_FILE).write_text(report(study_dir, same_score=compares_methods and info.get("kind") != "search"))
    if (out / FIGURES_DIR).exists():
        shutil.rmtree(out / FIGURES_DIR)
    written = write_figures(study_dir, out / FIGURES_DIR)
    for name in EXPORTED_FILES:
        if (study_dir / name).exists():
            shutil.copy2(study_dir / name, out / name)
    if (out / RECORDS_DIR).exists():
        shutil.rmtree(out / RECORDS_DIR)
    shutil.copytree(study_dir / RECORDS_DIR, out / RECORDS_DIR)
    (out / PROVENANCE_FILE).write_text(provenance_text(study_dir, info, rows, read_records(study_dir), written))
    return out


def check_target(out: Path, info: dict, force: bool) -> None:
    """An export replaces only what raygan wrote there for the same study: an earlier export of it.
    Any other non-empty folder is refused; with ``force``, the export's own names in it are
    replaced (and the line says which), other files are left alone."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    held, damage = read_manifest(out / STUDY_FILE) if (out / STUDY_FILE).exists() else ({}, None)
    if damage is None and (held.get("study"), held.get("profile")) == (info["study"], info["profile"]):
        return  # an earlier export of this study: updated in place
    if held:
        what = f"an export of another study ({held.get('study')}, profile {held.get('profile')})"
    else:
        names = sorted(p.name for p in out.iterdir())
        what = f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} that no export of this study wrote (" + \
               ", ".join(names[:4]) + (", ..." if len(names) > 4 else "") + ")"
    if not force:
        raise RayganError(f"--out {out} holds {what}; export into a new or empty folder, or pass --force to "
                          f"replace it")
    replaced = [name for name in WRITTEN if (out / name).exists()]
    print(f"raygan: --force: replacing {what} in {out}" + (f": {', '.join(replaced)}" if replaced else "")
          + "; other files there are kept", file=sys.stderr)
    for name in replaced:
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()


def provenance_text(study_dir: Path, info: dict, rows: list[dict], records: list[dict], written: list[Path]) -> str:
    events = driver_events(study_dir)
    wall, drivers, last = driver_wall_seconds(events, records)
    machines = sorted({f"{e['hostname']} ({e['cpu']}, {e['cores']} cores)" for e in events})
    # The drivers' commits and versions: the results rows carry those of the process that wrote the
    # Parquet files (an export too), not of the one that trained.
    commits = sorted({e.get("git_revision") or "?" for e in events}) or ["?"]
    statuses = {s: sum(r["status"] == s for r in rows) for s in ("finished", "stopped", "failed")}
    trained = [r.get("train_seconds") for r in rows if r.get("train_seconds")]
    first = min((e["time"] for e in events), default=None)
    killed = sum(e["event"] == "start" for e in events) > sum(e["event"] == "end" for e in events)
    versions = {k: sorted({str(e[k]) for e in events if k in e} or {str(r.get(k)) for r in rows}) for k in VERSION_KEYS}
    lines = [
        f"# {info['study']} — profile {info['profile']}",
        "",
        f"- study hash {info['study_hash']}; {info.get('trials')} trials planned: {statuses['finished']} finished, "
        f"{statuses['stopped']} stopped, {statuses['failed']} failed",
        f"- wall time: {wall / 60:.1f} min over {drivers} driver run(s)"
        + (f", {time.strftime('%Y-%m-%d %H:%M', time.gmtime(first))} to {time.strftime('%Y-%m-%d %H:%M', time.gmtime(last))} UTC"
           if first else "")
        + (" (a driver that was killed counts up to its last recorded trial)" if killed else ""),
        f"- training time per trial: median {statistics.median(trained):.0f} s" if trained else "- training time: —",
        f"- commits (of the drivers): {', '.join(commits)}",
        f"- machines: {'; '.join(machines) or '—'}",
        "- " + ", ".join(f"{k.removesuffix('_version')} {'/'.join(v)}" for k, v in versions.items()),
        f"- options: {json.dumps(info.get('options') or {}, sort_keys=True)}",
        "",
        "Files: study.json and rows/ (continue with `cp -r` of this folder to `<storage>/" + info["study"]
        + "` and the study's command plus `--resume`), results.parquet, curves.parquet, report.md"
        + (", figures/ (" + ", ".join(p.name for p in written) + ")" if written else ""),
    ]
    return "\n".join(lines) + "\n"
