"""`raygan report`: a study's results in the paper's layout, the paper's numbers beside ours.

Rows are the factors the paper puts in rows (the dataset first); columns are the classes, then
the average and SD over classes; each class cell is the mean ± SD over seeds of test AUROC (in
percent, at the validation-selected epoch). The paper's number for the row and our difference
follow. A search study is reported as its trials ranked by validation AUROC.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

from raygan.errors import RayganError
from raygan.results import read_results
from raygan.study import STUDIES, Study, load_studies
from raygan.tuning import TRIALS_DIR

FORMATS = ("markdown", "csv")


def _study(name: str) -> Study | None:
    try:
        load_studies()
    except RayganError:
        return None
    return STUDIES.get(name) if name in STUDIES else None


def _label(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample SD: the spread over a cell's seeds."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _mean_population_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and population SD: the paper's ± over classes (its printed SDs equal the population
    SD of its printed class values, e.g. Table 1), so ours is comparable."""
    mean = statistics.fmean(values)
    return mean, (statistics.pstdev(values) if len(values) > 1 else None)


def _cell(mean: float | None, sd: float | None) -> str:
    if mean is None or math.isnan(mean):
        return "—"
    return f"{mean:.1f}" if sd is None else f"{mean:.1f}±{sd:.1f}"


def class_aurocs(info: dict, rows: list[dict]) -> dict[tuple, dict[int, list[float]]]:
    """Finished trials' test AUROC (%) by table row (its row factors' values), then by class: one
    value per seed. The table and the γ figure both average these."""
    row_factors = info.get("rows") or ["dataset"]
    cells: dict[tuple, dict[int, list[float]]] = {}
    for r in rows:
        if r["status"] == "finished" and r.get("auroc") is not None:
            key = tuple(r[f"factor.{f}"] for f in row_factors)
            cells.setdefault(key, {}).setdefault(r["factor.class_index"], []).append(100 * r["auroc"])
    return cells


def grid_table(info: dict, rows: list[dict], study: Study | None) -> tuple[list[str], list[list], list[str]]:
    """(header, body rows of (text cells, numbers), notes) for a grid study."""
    row_factors = info.get("rows") or ["dataset"]
    order: dict[tuple, None] = {}
    for t in info.get("trial_list") or []:
        order.setdefault(tuple(t["factors"][f] for f in row_factors), None)
    classes = sorted({r["factor.class_index"] for r in rows})
    cells = class_aurocs(info, rows)
    order.update(dict.fromkeys(cells))
    header = [*row_factors, *[f"class {c}" for c in classes], "avg", "SD", "paper", "Δ"]
    body = []
    for key in order:
        per_class = cells.get(key, {})
        class_stats = {c: _mean_sd(v) for c, v in per_class.items()}
        means = [m for m, _ in class_stats.values()]
        avg, sd = _mean_population_sd(means) if means else (None, None)
        paper = study.paper.get(key) if study is not None and study.paper is not None else None
        paper_classes = study.paper.classes(key) if study is not None and study.paper is not None else None
        delta = avg - paper[0] if paper is not None and avg is not None else None
        body.append({
            "factors": [_label(v) for v in key],
            "classes": [class_stats.get(c, (None, None)) for c in classes],
            "avg": avg, "sd": sd, "paper": paper, "delta": delta,
            # the paper's own class-by-class row, where its table prints one
            "paper_classes": [paper_classes[c] if c < len(paper_classes) else None for c in classes]
            if paper_classes else None,
        })
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "stopped", "failed")}
    notes = [
        f"study {info['study']} ({info.get('reproduces', '')}), profile {info['profile']}: "
        f"{counts['finished']} trials finished, {counts['failed']} failed, {counts['stopped']} stopped "
        f"(of {info.get('trials')} planned)",
        "test AUROC (%) at the validation-selected epoch; class cells: mean±SD (sample) over seeds; avg and "
        "SD (population, as the paper) over the classes' means; paper: the paper's mean±SD over classes; Δ = avg − paper; — : not reported",
    ]
    if any(row["paper_classes"] for row in body):
        notes.append("↳ paper: the paper's class-by-class row under ours (its avg and SD as printed)")
    if study is not None and study.paper is not None:
        notes.append(f"paper: {study.paper.source}")
    for r in rows:
        if r["status"] == "failed":
            notes.append(f"failed: {r['trial_key']}: {r['error']}")
    return header, body, notes


def render_grid(header: list[str], body: list[dict], notes: list[str], fmt: str) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        n_factors = len(body[0]["factors"]) if body else 0
        classes = header[n_factors:-4]
        per_class = any(row["paper_classes"] for row in body)
        writer.writerow([*header[:n_factors], *[x for c in classes for x in (c, f"{c} SD")],
                         "avg", "SD", "paper", "paper SD", "delta", *([f"paper {c}" for c in classes] if per_class else [])])
        for row in body:
            writer.writerow([
                *row["factors"],
                *[_num(x) for m, s in row["classes"] for x in (m, s)],
                _num(row["avg"]), _num(row["sd"]),
                _num(row["paper"][0] if row["paper"] else None), _num(row["paper"][1] if row["paper"] else None),
                _num(row["delta"]),
                *([_num(x) for x in row["paper_classes"] or [None] * len(classes)] if per_class else []),
            ])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in body:
        paper = row["paper"]
        cells = [
            *row["factors"],
            *[_cell(m, s) for m, s in row["classes"]],
            _cell(row["avg"], None), _cell(row["sd"], None),
            _cell(paper[0], paper[1]) if paper else "—",
            f"{row['delta']:+.1f}" if row["delta"] is not None else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if row["paper_classes"]:
            lines.append("| " + " | ".join([
                "↳ paper", *[""] * (len(row["factors"]) - 1),
                *[_cell(x, None) for x in row["paper_classes"]],
                _cell(paper[0], None) if paper else "—", _cell(paper[1], None) if paper and paper[1] is not None else "—",
                "", "",
            ]) + " |")
    return "\n".join(lines + [""] + notes) + "\n"


def _num(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def search_table(info: dict, rows: list[dict], fmt: str) -> str:
    ranked = sorted(rows, key=lambda r: -(r.get("auroc_val") if r.get("auroc_val") is not None else -math.inf))
    params = sorted({k for r in rows for k in r if k.startswith("factor.")} - {
        "factor.dataset", "factor.class_index", "factor.seed"})
    header = ["trial", "status", *[p.removeprefix("factor.") for p in params], "auroc_val", "auroc (test)", "epochs"]
    table = [[r["trial_key"], r["status"], *[_label(r.get(p)) for p in params],
              _num(r.get("auroc_val")), _num(r.get("auroc")), _label(r.get("epochs"))] for r in ranked]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(table)
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    note = (f"search {info['study']}, profile {info['profile']}: {len(rows)} trials, ranked by validation AUROC "
            f"(the objective); test AUROC at the validation-selected epoch is shown, never used")
    return "\n".join(lines + ["", note]) + "\n"


def report(study_dir: Path, fmt: str = "markdown", skip_damaged: bool = False) -> str:
    if fmt not in FORMATS:
        raise RayganError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    info, rows = read_results(study_dir, skip_damaged)
    if info.get("kind") == "search":
        return search_table(info, rows, fmt)
    header, body, notes = grid_table(info, rows, _study(info["study"]))
    return render_grid(header, body, notes, fmt)


def figures(study_dir: Path, out_dir: Path) -> list[Path]:
    """The study's figures as PNGs in ``out_dir`` (see raygan.figures)."""
    from raygan.figures import write_figures

    info, _ = read_results(study_dir)
    return write_figures(study_dir, out_dir, _study(info["study"]))


def best_trial(study_dir: Path, skip_damaged: bool = False) -> dict:
    """The trial with the best validation AUROC (the selection metric; never test AUROC)."""
    info, rows = read_results(study_dir, skip_damaged)
    candidates = [r for r in rows if r["status"] in ("finished", "stopped") and r.get("auroc_val") is not None
                  and not math.isnan(r["auroc_val"])]
    if not candidates:
        raise RayganError(f"{study_dir} has no finished trial with a validation AUROC yet")
    best = max(candidates, key=lambda r: (r["auroc_val"], -r["epochs"] if r.get("epochs") else 0))
    run_dir = Path(study_dir).expanduser().resolve() / TRIALS_DIR / best["trial_key"]
    config_path = run_dir / "config.json"
    selected = run_dir / "checkpoints" / "selected.pt"
    return {
        "study": info["study"],
        "trial_key": best["trial_key"],
        "auroc_val": best["auroc_val"],
        "auroc": best["auroc"],
        "selected_epoch": best["selected_epoch"],
        "checkpoint": str(selected) if selected.exists() else None,  # None: the study kept none
        "config": json.loads(config_path.read_text()) if config_path.exists() else None,
    }
