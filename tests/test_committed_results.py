"""The study results committed under results/<study>-<profile>/ (exported with `raygan study export`)
still report: `raygan report` on a copy gives the committed report.md, verdicts included, without
rerunning anything and without rewriting the committed files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from inprocess import raygan

from raygan.study import load_studies

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p for p in (ROOT / "results").glob("*-cpu") if (p / "study.json").exists())


def test_there_are_committed_results():
    assert FOLDERS, "results/<study>-cpu/ folders are committed"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_committed_results_report_as_committed(folder, tmp_path):
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    before = _digest(copy)
    args = ["--same-score"] if (copy / "same_score.json").exists() else []
    result = raygan("report", str(copy), *args)
    assert result.returncode == 0, result.stderr
    committed = (folder / "report.md").read_text()
    if "optimisation history" in committed:  # a search's report names its own folder
        committed, out = committed.split("\n\n")[0], result.stdout.split("\n\n")[0]
    else:
        out = result.stdout
    assert out == committed
    if load_studies().get(json.loads((folder / "study.json").read_text())["study"]).paper is not None:
        # a study of a paper table: a verdict per paper cell (hpo_confirm, say, has no paper table)
        assert "| verdict |" in out and ("reproduced" in out or "no paper number" in out)
    else:
        assert "| verdict |" not in out
    # reporting never rewrote what was committed (best_config.json is the report's own output)
    after = {k: v for k, v in _digest(copy).items() if k != "best_config.json"}
    assert after == {k: v for k, v in before.items() if k != "best_config.json"}
    assert not list(copy.rglob("*.pt")), "checkpoints are never committed"


@pytest.mark.parametrize("folder", [f for f in FOLDERS if load_studies().get(
    json.loads((f / "study.json").read_text())["study"]).comparisons], ids=lambda f: f.name)
def test_a_committed_tables_comparisons_are_the_differences_of_its_own_cells(folder):
    """Each comparison the study names is, class by class, the difference of the table's own cells
    (seed means of both sides), and its Δ the mean of those; the call follows the head-to-head rule."""
    from raygan.analysis.comparisons import comparison_rows
    from raygan.analysis.parquet import read_results
    from raygan.analysis.tables import class_aurocs
    from raygan.analysis.verdicts import VERSUS_MIN_SEEDS

    info, rows = read_results(folder)
    study = load_studies().get(info["study"])
    cells = class_aurocs(info, rows)  # (dataset, *row factors) -> class -> AUROC % per seed
    row_factors = info["rows"]
    checked = 0
    for comparison in study.comparisons:
        for entry in comparison_rows(info, rows, comparison):
            def key(side: dict) -> tuple:
                factors = {**entry["group"], **side}
                return tuple(factors[f] for f in row_factors)

            a, b = cells[key(comparison.a)], cells[key(comparison.b)]
            for cls, delta in entry["by_class"].items():
                if len(a[cls]) == len(b[cls]):  # every seed on both sides: the cells' means
                    assert delta == pytest.approx(sum(a[cls]) / len(a[cls]) - sum(b[cls]) / len(b[cls]))
                    checked += 1
            assert entry["delta"] == pytest.approx(sum(entry["by_class"].values()) / len(entry["by_class"]))
            if entry["seeds"] < VERSUS_MIN_SEEDS:
                assert entry["call"].startswith("too few seeds")
            elif entry["se"] is not None and abs(entry["delta"]) > 2 * entry["se"]:
                assert entry["call"] in (f"{comparison.a_label} better", f"{comparison.b_label} better")
            else:
                assert entry["call"] == "not separable"
    assert checked
