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
    assert FOLDERS, "results/<study>-cpu/ folders are committed (issue 15)"


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
