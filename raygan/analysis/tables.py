"""The paper-layout table of a grid study: rows are the factors the paper puts in rows (the dataset
first); columns are the classes, then the average and SD over classes; each class cell is the mean ±
SD over seeds of test AUROC (in percent, at the validation-selected epoch). The paper's number for
the row and our difference follow.
"""

from __future__ import annotations

import csv
import io
import math
import statistics

from raygan.store.manifest import table_row_factors
from raygan.study import Study


METRIC_TITLES = {
    "auroc": "test AUROC (%) at the validation-selected epoch",
    "auroc_reconstruction": "test AUROC (%) of one score for every method, ‖x − G(x)‖₂, at the validation-selected epoch",
}


def label(value) -> str:
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


def cell_text(mean: float | None, sd: float | None) -> str:
    if mean is None or math.isnan(mean):
        return "—"
    return f"{mean:.1f}" if sd is None else f"{mean:.1f}±{sd:.1f}"


def class_aurocs(info: dict, rows: list[dict], metric: str = "auroc") -> dict[tuple, dict[int, list[float]]]:
    """Finished trials' test AUROC (%) by table row (its row factors' values), then by class: one
    value per seed. The table and the γ figure both average these. ``metric``: ``auroc`` (at the
    validation-selected epoch), ``auroc_best_test_optimistic`` or ``auroc_reconstruction``."""
    row_factors = table_row_factors(info)
    cells: dict[tuple, dict[int, list[float]]] = {}
    for r in rows:
        value = r.get(metric)
        if r["status"] == "finished" and value is not None and not math.isnan(value):
            key = tuple(r[f"factor.{f}"] for f in row_factors)
            cells.setdefault(key, {}).setdefault(r["factor.class_index"], []).append(100 * value)
    return cells


def grid_table(info: dict, rows: list[dict], study: Study | None,
               metric: str = "auroc") -> tuple[list[str], list[list], list[str]]:
    """(header, body rows of (text cells, numbers), notes) for a grid study."""
    row_factors = table_row_factors(info)
    order: dict[tuple, None] = {}
    for t in info.get("trial_list") or []:
        order.setdefault(tuple(t["factors"][f] for f in row_factors), None)
    classes = sorted({r["factor.class_index"] for r in rows})
    cells = class_aurocs(info, rows, metric)
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
            "factors": [label(v) for v in key],
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
        f"{METRIC_TITLES[metric]}; class cells: mean±SD (sample) over seeds; avg and "
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


def class_names(dataset: str) -> list[str] | None:
    """A registered data set's class names (None for image folders, whose classes are the user's)."""
    from raygan.data import DATASETS

    if dataset not in DATASETS or dataset == "image_folder":
        return None
    return list(DATASETS.get(dataset).class_names)


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
                *[number_text(x) for m, s in row["classes"] for x in (m, s)],
                number_text(row["avg"]), number_text(row["sd"]),
                number_text(row["paper"][0] if row["paper"] else None), number_text(row["paper"][1] if row["paper"] else None),
                number_text(row["delta"]),
                *([number_text(x) for x in row["paper_classes"] or [None] * len(classes)] if per_class else []),
            ])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in body:
        paper = row["paper"]
        cells = [
            *row["factors"],
            *[cell_text(m, s) for m, s in row["classes"]],
            cell_text(row["avg"], None), cell_text(row["sd"], None),
            cell_text(paper[0], paper[1]) if paper else "—",
            f"{row['delta']:+.1f}" if row["delta"] is not None else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if row["paper_classes"]:
            lines.append("| " + " | ".join([
                "↳ paper", *[""] * (len(row["factors"]) - 1),
                *[cell_text(x, None) for x in row["paper_classes"]],
                cell_text(paper[0], None) if paper else "—", cell_text(paper[1], None) if paper and paper[1] is not None else "—",
                "", "",
            ]) + " |")
    return "\n".join(lines + [""] + notes) + "\n"


def number_text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
