"""The comparisons a paper table is about (a study's ``comparisons``), each a paired difference.

A comparison sets some factors to ``a``'s values against ``b``'s (Table 5: AdvProp against shared
BN); every other factor pairs the two runs (data set, class, seed, ...). At each value of the
factors left besides class and seed (γ, say), the report gives a − b in points of test AUROC at the
validation-selected epoch: per class the mean over the seeds both finished, then over the classes
the mean of the class means with the standard error combined from the classes' SEs, and the call
by the head-to-head rule (raygan.analysis.verdicts.call).
"""

from __future__ import annotations

import csv
import io
import math
import statistics

from raygan.analysis.tables import label
from raygan.analysis.verdicts import VERSUS_MIN_SEEDS, call


def comparison_rows(info: dict, rows: list[dict], comparison, metric: str = "auroc") -> list[dict]:
    """One entry per value of the grouping factors (those the comparison does not set, besides class
    and seed) where both sides finished on a common (class, seed): the mean of each side, Δ = a − b
    and its SE over classes, the seeds per class (fewest), wins of a over all pairs, the call, and
    the per-class Δs. Groups come in the study's trial order."""
    set_by = set(comparison.a) | set(comparison.b)
    trial_list = info.get("trial_list") or []
    names = (list(trial_list[0]["factors"]) if trial_list
             else sorted({k.removeprefix("factor.") for r in rows for k in r if k.startswith("factor.")}))
    group_by = [f for f in names if f not in set_by and f not in ("class_index", "seed")]
    values: dict[tuple, dict[object, dict[str, dict[object, float]]]] = {}
    for r in rows:
        value = r.get(metric)
        if r["status"] != "finished" or value is None or math.isnan(value):
            continue
        factors = {n: r.get(f"factor.{n}") for n in names}
        side = next((s for s, want in (("a", comparison.a), ("b", comparison.b))
                     if all(factors[k] == v for k, v in want.items())), None)
        if side is None:
            continue
        group = tuple(factors[f] for f in group_by)
        by_class = values.setdefault(group, {}).setdefault(factors["class_index"], {"a": {}, "b": {}})
        by_class[side][factors["seed"]] = 100 * value
    order = {g: i for i, g in enumerate(dict.fromkeys(tuple(t["factors"][f] for f in group_by) for t in trial_list))}
    out = []
    for group, classes in sorted(values.items(), key=lambda item: order.get(item[0], len(order))):
        per_class = []
        for cls in sorted(classes, key=str):
            sides = classes[cls]
            seeds = sorted(set(sides["a"]) & set(sides["b"]), key=str)
            if seeds:
                diffs = [sides["a"][s] - sides["b"][s] for s in seeds]
                per_class.append({
                    "class_index": cls, "diffs": diffs, "delta": statistics.fmean(diffs),
                    "se": statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None,
                    "a": statistics.fmean(sides["a"][s] for s in seeds),
                    "b": statistics.fmean(sides["b"][s] for s in seeds),
                })
        if not per_class:
            continue
        delta = statistics.fmean(c["delta"] for c in per_class)
        se = (math.sqrt(math.fsum(c["se"] ** 2 for c in per_class)) / len(per_class)
              if all(c["se"] is not None for c in per_class) else None)
        seeds = min(len(c["diffs"]) for c in per_class)
        diffs = [d for c in per_class for d in c["diffs"]]
        out.append({
            "group": dict(zip(group_by, group)), "a": statistics.fmean(c["a"] for c in per_class),
            "b": statistics.fmean(c["b"] for c in per_class), "delta": delta, "se": se,
            "classes": len(per_class), "seeds": seeds, "wins": sum(d > 0 for d in diffs), "pairs": len(diffs),
            "by_class": {c["class_index"]: c["delta"] for c in per_class},
            "call": call(delta, se, seeds, comparison.a_label, comparison.b_label),
        })
    return out


def render_comparisons(study_comparisons, info: dict, rows: list[dict], fmt: str) -> str:
    """The table of every comparison the study names (empty when none has a pair)."""
    entries = [(c, e) for c in study_comparisons for e in comparison_rows(info, rows, c)]
    if not entries:
        return ""
    group_by = list(dict.fromkeys(f for _, e in entries for f in e["group"]))
    header = ["comparison", *group_by, "A", "B", "Δ (A − B)", "SE", "classes × seeds", "A wins", "Δ by class", "call"]

    def cells(comparison, e) -> list[str]:
        by_class = ", ".join(f"{c}: {d:+.1f}" for c, d in e["by_class"].items())
        seeds = f"{e['classes']} × {e['seeds']}"
        return [f"{comparison.a_label} (A) vs {comparison.b_label} (B)",
                *(label(e["group"].get(f, "")) for f in group_by), f"{e['a']:.1f}", f"{e['b']:.1f}",
                f"{e['delta']:+.1f}", f"{e['se']:.1f}" if e["se"] is not None else "—", seeds,
                f"{e['wins']}/{e['pairs']}", by_class, e["call"]]

    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(cells(c, e) for c, e in entries)
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for c, e in entries:
        row = cells(c, e)
        if e["call"].endswith("better"):
            row[-1] = f"**{row[-1]}**"
        lines.append("| " + " | ".join(row) + " |")
    note = ("The table's own comparisons: test AUROC (%) at the validation-selected epoch, A − B paired by class "
            "and seed (seeds both finished); Δ: mean over classes of the class means, SE combined from the classes' "
            f"SEs over seeds; called when |Δ| > 2 SE with at least {VERSUS_MIN_SEEDS} seeds in every class")
    return "\n".join(lines + ["", note]) + "\n"
