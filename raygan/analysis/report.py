"""`raygan report`: a study's results in the paper's layout, the paper's numbers beside ours.

A grid study is reported as its paper-layout table (raygan.analysis.tables), the verdict per paper
cell and its head-to-head (raygan.analysis.verdicts); a search study as its trials ranked by
validation AUROC, with Optuna's history and importances and the best configuration.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from raygan.analysis.comparisons import render_comparisons
from raygan.analysis.parquet import read_results
from raygan.analysis.speed import render_speed
from raygan.analysis.tables import grid_table, label, number_text, render_grid
from raygan.analysis.verdicts import render_verdicts, render_versus, verdict_rows, versus_rows
from raygan.core.atomic import write_text
from raygan.core.errors import RayganError
from raygan.engine.run_dir import CONFIG_FILE, selected_checkpoint
from raygan.store.layout import BEST_CONFIG_FILE, trial_dir
from raygan.store.manifest import table_row_factors
from raygan.store.optuna_db import TUNE_TRIAL_ATTR, load_optuna_study
from raygan.study import find_study

FORMATS = ("markdown", "csv")


def search_table(info: dict, rows: list[dict], fmt: str, study_dir: Path | None = None) -> str:
    ranked = sorted(rows, key=lambda r: -(r.get("auroc_val") if r.get("auroc_val") is not None else -math.inf))
    params = sorted({k for r in rows for k in r if k.startswith("factor.")} - {
        "factor.dataset", "factor.class_index", "factor.seed"})
    header = ["trial", "status", *[p.removeprefix("factor.") for p in params], "auroc_val", "auroc (test)", "epochs"]
    table = [[r["trial_key"], r["status"], *[label(r.get(p)) for p in params],
              number_text(r.get("auroc_val")), number_text(r.get("auroc")), label(r.get("epochs"))] for r in ranked]
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
            lines.append(f"  trial {t.number:>3} ({t.user_attrs.get(TUNE_TRIAL_ATTR, '?')}): {value}"
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

    best = best_row(rows)
    if best is None or not info.get("base"):
        return None
    resolved = trial_dir(study_dir, best["trial_key"]) / CONFIG_FILE
    if resolved.exists():
        config = json.loads(resolved.read_text())
    else:
        sampled = {k.removeprefix("factor."): v for k, v in best.items() if k.startswith("factor.")}
        config = apply_sampled(info["base"]["config"], sampled)
    config["train"]["epochs"] = info["base"]["config"]["train"]["epochs"]  # a stopped trial: its full budget
    path = Path(study_dir) / BEST_CONFIG_FILE
    write_text(path, json.dumps(config, indent=1) + "\n")
    return path


def report(study_dir: Path, fmt: str = "markdown", skip_damaged: bool = False, same_score: bool = False) -> str:
    """The paper-layout table, then the verdict per paper cell; ``same_score`` adds the table of
    every method scored by ‖x − G(x)‖₂ (see raygan.analysis.same_score)."""
    if fmt not in FORMATS:
        raise RayganError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    info, rows = read_results(study_dir, skip_damaged)
    if info.get("kind") == "search":
        return search_table(info, rows, fmt, study_dir)
    study = find_study(info["study"])
    header, body, notes = grid_table(info, rows, study)
    parts = [render_grid(header, body, notes, fmt)]
    entries = verdict_rows(info, rows, study)
    if any(e["paper"] is not None for e in entries):  # digits and other sets without paper numbers: none
        parts.append(render_verdicts(entries, table_row_factors(info), fmt))
    if study is not None and study.versus is not None:
        head_to_head = versus_rows(info, rows, study.versus)
        if head_to_head:
            parts.append(render_versus(head_to_head, study.versus, fmt))
    if study is not None and study.paper_speed is not None:
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


def best_row(rows: list[dict]) -> dict | None:
    """The finished or stopped trial with the best validation AUROC (the selection metric; never
    test AUROC), the one with fewer epochs on a tie; None if no trial has one."""
    candidates = [r for r in rows if r["status"] in ("finished", "stopped") and r.get("auroc_val") is not None
                  and not math.isnan(r["auroc_val"])]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r["auroc_val"], -r["epochs"] if r.get("epochs") else 0))


def best_trial(study_dir: Path, skip_damaged: bool = False) -> dict:
    """The trial with the best validation AUROC (the selection metric; never test AUROC)."""
    info, rows = read_results(study_dir, skip_damaged)
    best = best_row(rows)
    if best is None:
        raise RayganError(f"{study_dir} has no finished trial with a validation AUROC yet")
    run_dir = trial_dir(Path(study_dir).expanduser().resolve(), best["trial_key"])
    config_path = run_dir / CONFIG_FILE
    selected = selected_checkpoint(run_dir)
    return {
        "study": info["study"],
        "trial_key": best["trial_key"],
        "auroc_val": best["auroc_val"],
        "auroc": best["auroc"],
        "selected_epoch": best["selected_epoch"],
        "checkpoint": str(selected) if selected.exists() else None,  # None: the study kept none
        "config": json.loads(config_path.read_text()) if config_path.exists() else None,
    }
