"""Calls on a grid study's table: the verdict per paper cell (reproduced or not, within a tolerance
from the spread over seeds), and the head-to-head of two levels of a factor, paired by seed.
"""

from __future__ import annotations

import csv
import io
import math
import statistics

from raygan.analysis.tables import cell_text, class_aurocs, class_names, label, number_text
from raygan.store.manifest import table_row_factors
from raygan.study import Study


# The verdict rule (docs/reports.md, "The verdict rule"): a paper cell is reproduced when ours is at most
# VERDICT_POINTS below it, or within two standard errors over seeds where we ran several.
VERDICT_POINTS = 1.0


def _pooled_sd(per_class: dict[int, list[float]]) -> float | None:
    """The row's seed-to-seed SD, pooled over its classes with two or more seeds."""
    dof = sum(len(v) - 1 for v in per_class.values() if len(v) > 1)
    if not dof:
        return None
    return math.sqrt(math.fsum((len(v) - 1) * statistics.variance(v) for v in per_class.values() if len(v) > 1) / dof)


def verdict(ours: float, paper: float | None, tolerance: float) -> str:
    """reproduced: ours at least the paper's number less the tolerance; the paper's claim holds."""
    if paper is None:
        return "no paper number"
    return "reproduced" if ours >= paper - tolerance else "not reproduced"


def verdict_rows(info: dict, rows: list[dict], study: Study | None) -> list[dict]:
    """One entry per paper cell our study ran: each class the paper prints a number for, and each
    row's average over classes; rows without a paper number get one entry, 'no paper number'.

    ours: validation-selected test AUROC (%), mean over seeds (classes: then over classes);
    optimistic: the same with each trial's best test epoch (it peeks at the test set);
    tolerance: max(VERDICT_POINTS, 2 standard errors over seeds), the SE from the class's own
    seeds, or the row's pooled seed SD for a class run with one seed; VERDICT_POINTS alone where
    the row has no class with two seeds."""
    row_factors = table_row_factors(info)
    selected = class_aurocs(info, rows, "auroc")
    optimistic = class_aurocs(info, rows, "auroc_best_test_optimistic")
    paper_table = study.paper if study is not None else None
    order = list(dict.fromkeys([tuple(t["factors"][f] for f in row_factors) for t in info.get("trial_list") or []]
                               + list(selected)))
    out = []
    for key in order:
        per_class = selected.get(key)
        if not per_class:
            continue
        pooled = _pooled_sd(per_class)
        classes = sorted(per_class)
        names = class_names(key[0])
        num_classes = len(names) if names is not None else None
        paper = paper_table.get(key) if paper_table is not None else None
        paper_classes = paper_table.classes(key) if paper_table is not None else None

        def sd_of(c: int) -> float | None:
            return statistics.stdev(per_class[c]) if len(per_class[c]) > 1 else pooled

        def entry(cls: str, ours: float, sd: float | None, opt: float | None, paper_value: float | None,
                  tolerance: float, seeds: str, note: str = "") -> dict:
            return {"factors": [label(v) for v in key], "class": cls, "ours": ours, "sd": sd, "seeds": seeds,
                    "optimistic": opt, "paper": paper_value,
                    "delta": ours - paper_value if paper_value is not None else None,
                    "tolerance": tolerance, "verdict": verdict(ours, paper_value, tolerance), "note": note}

        if paper_classes:
            for c in classes:
                values = per_class[c]
                sd = sd_of(c)
                tolerance = max(VERDICT_POINTS, 2 * sd / math.sqrt(len(values))) if sd is not None else VERDICT_POINTS
                opt = optimistic.get(key, {}).get(c)
                out.append(entry(str(c), statistics.fmean(values),
                                 statistics.stdev(values) if len(values) > 1 else None,
                                 statistics.fmean(opt) if opt else None,
                                 paper_classes[c] if c < len(paper_classes) else None, tolerance,
                                 str(len(values))))
        means = [statistics.fmean(per_class[c]) for c in classes]
        avg = statistics.fmean(means)
        sds = [sd_of(c) for c in classes]
        if all(sd is not None for sd in sds):
            se = math.sqrt(math.fsum(sd * sd / len(per_class[c]) for sd, c in zip(sds, classes))) / len(classes)
            tolerance = max(VERDICT_POINTS, 2 * se)
        else:
            tolerance = VERDICT_POINTS
        counts = sorted({len(per_class[c]) for c in classes})
        seeds = "-".join(map(str, counts))
        # SD over seeds of the class average, where every class ran the same seeds (rows come in
        # trial-key order, so the i-th value of every class is the same seed)
        by_seed = None
        if len(counts) == 1 and counts[0] > 1:
            by_seed = statistics.stdev([statistics.fmean(per_class[c][i] for c in classes)
                                        for i in range(len(per_class[classes[0]]))])
        opt_means = [statistics.fmean(optimistic[key][c]) for c in classes if c in optimistic.get(key, {})]
        paper_value, note = (paper[0] if paper else None), ""
        subset = num_classes is not None and len(classes) < num_classes
        if subset and paper_classes:
            paper_value = statistics.fmean(paper_classes[c] for c in classes)
            note = f"paper averaged over the same {len(classes)} classes"
        elif subset and paper is not None:
            note = f"ours over classes {' '.join(map(str, classes))} of {num_classes}, the paper's over all"
        out.append(entry("avg", avg, by_seed, statistics.fmean(opt_means) if len(opt_means) == len(classes) else None,
                         paper_value, tolerance, seeds, note))
    return out


def render_verdicts(entries: list[dict], row_factors: list[str], fmt: str) -> str:
    header = [*row_factors, "class", "ours", "seeds", "optimistic (best test epoch)", "paper", "Δ", "tolerance",
              "verdict", "note"]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*header[:-8], "ours", "ours SD", *header[-7:]])
        for e in entries:
            writer.writerow([*e["factors"], e["class"], number_text(e["ours"]), number_text(e["sd"]), e["seeds"], number_text(e["optimistic"]),
                             number_text(e["paper"]), number_text(e["delta"]), number_text(e["tolerance"]), e["verdict"], e["note"]])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for e in entries:
        lines.append("| " + " | ".join([
            *e["factors"], e["class"], cell_text(e["ours"], e["sd"]), e["seeds"], cell_text(e["optimistic"], None),
            cell_text(e["paper"], None), f"{e['delta']:+.1f}" if e["delta"] is not None else "—",
            f"{e['tolerance']:.1f}", f"**{e['verdict']}**" if e["verdict"] == "reproduced" else e["verdict"],
            e["note"],
        ]) + " |")
    notes = [
        "Verdict per paper cell: ours = test AUROC (%) at the validation-selected epoch, mean±SD over seeds (avg: "
        "over classes); reproduced when ours ≥ paper − tolerance, tolerance = max(1.0, 2 standard errors over seeds); "
        "optimistic: each trial's best test epoch, which peeks at the test set (papers/004 does not say how it chose "
        "its epoch)",
    ]
    return "\n".join(lines + [""] + notes) + "\n"


# A head-to-head is called only with at least this many paired seeds (GAN runs move by several
# hundredths of AUROC with the seed alone) and when the mean difference is beyond 2 standard errors.
VERSUS_MIN_SEEDS = 3


def versus_rows(info: dict, rows: list[dict], versus: tuple[str, object, object], metric: str = "auroc") -> list[dict]:
    """The study's head-to-head ``(factor, a, b)``: for every cell of the other factors (dataset,
    class, ...), a − b in points of test AUROC paired by seed (only seeds both finished), its mean
    and standard error over the pairs, wins of a; then one 'avg' entry per dataset over its classes
    (mean of the class means; SE combined from the classes' SEs). The call: 'a better' or 'b
    better' when |mean| > 2 SE with at least VERSUS_MIN_SEEDS pairs in every class, else 'not
    separable' (or 'too few seeds')."""
    name, a, b = versus
    trial_list = info.get("trial_list") or []
    factor_names = (list(trial_list[0]["factors"]) if trial_list
                    else sorted({k.removeprefix("factor.") for r in rows for k in r if k.startswith("factor.")}))
    others = [f for f in factor_names if f not in (name, "seed")]
    values: dict[tuple, dict[object, dict[int, float]]] = {}
    for r in rows:
        value = r.get(metric)
        if r["status"] != "finished" or value is None or math.isnan(value) or r[f"factor.{name}"] not in (a, b):
            continue
        cell = tuple(r[f"factor.{f}"] for f in others)
        values.setdefault(cell, {a: {}, b: {}})[r[f"factor.{name}"]][r["factor.seed"]] = 100 * value
    # cells in the study's trial order, whatever the order of the records
    order = {c: i for i, c in enumerate(dict.fromkeys(tuple(t["factors"][f] for f in others) for t in trial_list))}
    out, by_group = [], {}
    for cell, sides in sorted(values.items(), key=lambda item: order.get(item[0], len(order))):
        seeds = sorted(set(sides[a]) & set(sides[b]))
        if not seeds:
            continue
        diffs = [sides[a][s] - sides[b][s] for s in seeds]
        mean = statistics.fmean(diffs)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
        entry = {"cell": dict(zip(others, cell)), "a": statistics.fmean(sides[a][s] for s in seeds),
                 "b": statistics.fmean(sides[b][s] for s in seeds), "delta": mean, "se": se, "pairs": len(seeds),
                 "wins": sum(d > 0 for d in diffs), "of": len(diffs), "call": _versus_call(mean, se, len(seeds), versus)}
        out.append(entry)
        group = tuple(v for f, v in entry["cell"].items() if f != "class_index")
        by_group.setdefault(group, []).append(entry)
    for group, entries in by_group.items():
        if len(entries) < 2:
            continue
        mean = statistics.fmean(e["delta"] for e in entries)
        se = (math.sqrt(math.fsum(e["se"] ** 2 for e in entries)) / len(entries)
              if all(e["se"] is not None for e in entries) else None)
        pairs = min(e["pairs"] for e in entries)
        cell = {**dict(zip([f for f in others if f != "class_index"], group)), "class_index": "avg"}
        out.append({"cell": {f: cell[f] for f in others}, "a": statistics.fmean(e["a"] for e in entries),
                    "b": statistics.fmean(e["b"] for e in entries), "delta": mean, "se": se,
                    "pairs": pairs, "wins": sum(e["wins"] for e in entries), "of": sum(e["of"] for e in entries),
                    "call": _versus_call(mean, se, pairs, versus)})
    return out


def _versus_call(mean: float, se: float | None, pairs: int, versus: tuple) -> str:
    _, a, b = versus
    return call(mean, se, pairs, label(a), label(b))


def call(mean: float, se: float | None, pairs: int, a_label: str, b_label: str) -> str:
    """The head-to-head rule: 'A better' or 'B better' when |Δ| > 2 SE with at least
    VERSUS_MIN_SEEDS pairs in every class, else 'not separable' or 'too few seeds'."""
    if pairs < VERSUS_MIN_SEEDS or se is None:
        return f"too few seeds (< {VERSUS_MIN_SEEDS})"
    if abs(mean) <= 2 * se:
        return "not separable"
    return f"{a_label} better" if mean > 0 else f"{b_label} better"


def render_versus(entries: list[dict], versus: tuple, fmt: str) -> str:
    name, a, b = versus
    cols = list(entries[0]["cell"]) if entries else []
    header = [*("class" if c == "class_index" else c for c in cols), label(a), label(b), f"Δ ({label(a)} − {label(b)})", "SE", "seeds", f"{label(a)} wins", "call"]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        for e in entries:
            writer.writerow([*map(label, e["cell"].values()), number_text(e["a"]), number_text(e["b"]), number_text(e["delta"]),
                             number_text(e["se"]), e["pairs"], e["wins"], e["call"]])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for e in entries:
        lines.append("| " + " | ".join([
            *map(label, e["cell"].values()), cell_text(e["a"], None), cell_text(e["b"], None), f"{e['delta']:+.1f}",
            f"{e['se']:.1f}" if e["se"] is not None else "—", str(e["pairs"]), f"{e['wins']}/{e['of']}",
            f"**{e['call']}**" if e["call"].endswith("better") else e["call"],
        ]) + " |")
    note = (f"Head-to-head {name} {label(a)} vs {label(b)}: test AUROC (%) at the validation-selected epoch, "
            f"paired by seed (seeds both finished); Δ mean and SE over the pairs (avg: over classes, SE combined); "
            f"called when |Δ| > 2 SE with at least {VERSUS_MIN_SEEDS} seeds in every class")
    return "\n".join(lines + ["", note]) + "\n"
