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

from raygan.core.errors import RayganError
from raygan.analysis.comparisons import MIN_SEEDS, call, render_comparisons
from raygan.analysis.comparisons import label as _label
from raygan.analysis.parquet import read_results
from raygan.study import STUDIES, Study, load_studies
from raygan.tune.driver import TRIALS_DIR

FORMATS = ("markdown", "csv")
METRIC_TITLES = {
    "auroc": "test AUROC (%) at the validation-selected epoch",
    "auroc_reconstruction": "test AUROC (%) of one score for every method, ‖x − G(x)‖₂, at the validation-selected epoch",
}
# The verdict rule (docs/reports.md, "The verdict rule"): a paper cell is reproduced when ours is at most
# VERDICT_POINTS below it, or within two standard errors over seeds where we ran several.
VERDICT_POINTS = 1.0


def _study(name: str) -> Study | None:
    try:
        load_studies()
    except RayganError:
        return None
    return STUDIES.get(name) if name in STUDIES else None




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


def class_aurocs(info: dict, rows: list[dict], metric: str = "auroc") -> dict[tuple, dict[int, list[float]]]:
    """Finished trials' test AUROC (%) by table row (its row factors' values), then by class: one
    value per seed. The table and the γ figure both average these. ``metric``: ``auroc`` (at the
    validation-selected epoch), ``auroc_best_test_optimistic`` or ``auroc_reconstruction``."""
    row_factors = info.get("rows") or ["dataset"]
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
    row_factors = info.get("rows") or ["dataset"]
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
    row_factors = info.get("rows") or ["dataset"]
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
        num_classes = _num_classes(key[0])
        paper = paper_table.get(key) if paper_table is not None else None
        paper_classes = paper_table.classes(key) if paper_table is not None else None

        def sd_of(c: int) -> float | None:
            return statistics.stdev(per_class[c]) if len(per_class[c]) > 1 else pooled

        def entry(cls: str, ours: float, sd: float | None, opt: float | None, paper_value: float | None,
                  tolerance: float, seeds: str, note: str = "") -> dict:
            return {"factors": [_label(v) for v in key], "class": cls, "ours": ours, "sd": sd, "seeds": seeds,
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


def _num_classes(dataset) -> int | None:
    from raygan.data import DATASETS

    if dataset not in DATASETS or dataset == "image_folder":
        return None
    return len(DATASETS.get(dataset).class_names)


def render_verdicts(entries: list[dict], row_factors: list[str], fmt: str) -> str:
    header = [*row_factors, "class", "ours", "seeds", "optimistic (best test epoch)", "paper", "Δ", "tolerance",
              "verdict", "note"]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*header[:-8], "ours", "ours SD", *header[-7:]])
        for e in entries:
            writer.writerow([*e["factors"], e["class"], _num(e["ours"]), _num(e["sd"]), e["seeds"], _num(e["optimistic"]),
                             _num(e["paper"]), _num(e["delta"]), _num(e["tolerance"]), e["verdict"], e["note"]])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for e in entries:
        lines.append("| " + " | ".join([
            *e["factors"], e["class"], _cell(e["ours"], e["sd"]), e["seeds"], _cell(e["optimistic"], None),
            _cell(e["paper"], None), f"{e['delta']:+.1f}" if e["delta"] is not None else "—",
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


VERSUS_MIN_SEEDS = MIN_SEEDS  # the head-to-head rule (raygan.analysis.comparisons.call)


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
    return call(mean, se, pairs, _label(a), _label(b))


def render_versus(entries: list[dict], versus: tuple, fmt: str) -> str:
    name, a, b = versus
    cols = list(entries[0]["cell"]) if entries else []
    header = [*("class" if c == "class_index" else c for c in cols), _label(a), _label(b), f"Δ ({_label(a)} − {_label(b)})", "SE", "seeds", f"{_label(a)} wins", "call"]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        for e in entries:
            writer.writerow([*map(_label, e["cell"].values()), _num(e["a"]), _num(e["b"]), _num(e["delta"]),
                             _num(e["se"]), e["pairs"], e["wins"], e["call"]])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for e in entries:
        lines.append("| " + " | ".join([
            *map(_label, e["cell"].values()), _cell(e["a"], None), _cell(e["b"], None), f"{e['delta']:+.1f}",
            f"{e['se']:.1f}" if e["se"] is not None else "—", str(e["pairs"]), f"{e['wins']}/{e['of']}",
            f"**{e['call']}**" if e["call"].endswith("better") else e["call"],
        ]) + " |")
    note = (f"Head-to-head {name} {_label(a)} vs {_label(b)}: test AUROC (%) at the validation-selected epoch, "
            f"paired by seed (seeds both finished); Δ mean and SE over the pairs (avg: over classes, SE combined); "
            f"called when |Δ| > 2 SE with at least {VERSUS_MIN_SEEDS} seeds in every class")
    return "\n".join(lines + ["", note]) + "\n"


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


def search_table(info: dict, rows: list[dict], fmt: str, study_dir: Path | None = None) -> str:
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
    extra = _search_summary(Path(study_dir), info, rows) if study_dir is not None else []
    return "\n".join(lines + ["", note, *extra]) + "\n"


def load_optuna_study(study_dir: Path, info: dict):
    """The search's Optuna study from its storage (None if the search kept none, e.g. it ran
    before searches had one)."""
    import warnings

    import optuna

    from raygan.tune.optuna_storage import OPTUNA_DB, default_url, open_storage, optuna_study_name

    url = (info.get("options") or {}).get("optuna_storage")
    if url is None:
        if not (Path(study_dir) / OPTUNA_DB).exists():
            return None
        url = default_url(Path(study_dir).expanduser().resolve())
    name = optuna_study_name(info["study"], info["study_hash"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.load_study(study_name=name, storage=open_storage(url))
        except KeyError:
            raise RayganError(f"{url} holds no Optuna study {name}; the search's trials are in results.parquet") from None


def _search_summary(study_dir: Path, info: dict, rows: list[dict]) -> list[str]:
    """What a search user looks at first, besides the ranking: Optuna's optimisation history,
    parameter importances, and the best configuration as a `raygan train --config` file."""
    import optuna

    lines = [""]
    study = load_optuna_study(study_dir, info)
    if study is not None:
        done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,)]
        lines.append(f"optimisation history (Optuna study {study.study_name}; value = validation AUROC, best so far):")
        best = -math.inf
        for t in study.trials:
            if t.value is not None:
                best = max(best, t.value)
            value = f"{t.value:.4f}" if t.value is not None else t.state.name.lower()
            lines.append(f"  trial {t.number:>3} ({t.user_attrs.get('tune_trial_id', '?')}): {value}"
                         + (f" (best {best:.4f})" if best > -math.inf else ""))
        try:
            importances = optuna.importance.get_param_importances(study)
            lines.append(f"parameter importances (Optuna's fANOVA over {len(done)} complete trials): "
                         + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
        except (ValueError, RuntimeError) as exc:
            lines.append(f"parameter importances: not computed ({exc})")
    path = write_best_config(study_dir, info, rows)
    if path is not None:
        lines.append(f"best configuration (by validation AUROC): {path}; train it with "
                     f"raygan train --config {path} --out runs/best")
    return lines


def write_best_config(study_dir: Path, info: dict, rows: list[dict]) -> Path | None:
    """``best_config.json`` in the study directory: the best trial's configuration (its resolved
    config.json where the trial directory is there, else the base plus its sampled values)."""
    from raygan.study import apply_sampled

    candidates = [r for r in rows if r["status"] in ("finished", "stopped") and r.get("auroc_val") is not None
                  and not math.isnan(r["auroc_val"])]
    if not candidates or not info.get("base"):
        return None
    best = max(candidates, key=lambda r: (r["auroc_val"], -r["epochs"] if r.get("epochs") else 0))
    resolved = Path(study_dir) / TRIALS_DIR / best["trial_key"] / "config.json"
    if resolved.exists():
        config = json.loads(resolved.read_text())
    else:
        sampled = {k.removeprefix("factor."): v for k, v in best.items() if k.startswith("factor.")}
        config = apply_sampled(info["base"]["config"], sampled)
    config["train"]["epochs"] = info["base"]["config"]["train"]["epochs"]  # a stopped trial: its full budget
    path = Path(study_dir) / "best_config.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config, indent=1) + "\n")
    tmp.replace(path)
    return path


def report(study_dir: Path, fmt: str = "markdown", skip_damaged: bool = False, same_score: bool = False) -> str:
    """The paper-layout table, then the verdict per paper cell; ``same_score`` adds the table of
    every method scored by ‖x − G(x)‖₂ (see raygan.analysis.same_score)."""
    if fmt not in FORMATS:
        raise RayganError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    info, rows = read_results(study_dir, skip_damaged)
    if info.get("kind") == "search":
        return search_table(info, rows, fmt, study_dir)
    study = _study(info["study"])
    header, body, notes = grid_table(info, rows, study)
    parts = [render_grid(header, body, notes, fmt)]
    entries = verdict_rows(info, rows, study)
    if any(e["paper"] is not None for e in entries):  # digits and other sets without paper numbers: none
        parts.append(render_verdicts(entries, info.get("rows") or ["dataset"], fmt))
    if study is not None and study.versus is not None:
        head_to_head = versus_rows(info, rows, study.versus)
        if head_to_head:
            parts.append(render_versus(head_to_head, study.versus, fmt))
    if study is not None and study.paper_speed is not None:
        from raygan.analysis.speed import render_speed

        table = render_speed(rows, study.paper_speed, fmt)
        if table:
            parts.append(table)
    if study is not None and study.comparisons:
        table = render_comparisons(study.comparisons, info, rows, fmt)
        if table:
            parts.append(table)
    if same_score:
        from raygan.analysis.same_score import with_same_score

        rescored = with_same_score(Path(study_dir), rows)
        header, body, notes = grid_table(info, rescored, None, metric="auroc_reconstruction")
        parts.append(render_grid(header, body, notes, fmt))
    return "\n".join(parts)


def figures(study_dir: Path, out_dir: Path) -> list[Path]:
    """The study's figures as PNGs in ``out_dir`` (see raygan.analysis.figures)."""
    from raygan.analysis.figures import write_figures

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
