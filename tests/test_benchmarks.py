"""The benchmark scripts still run (tiny settings; the figures themselves live in the README)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_benchmark_prints_a_row_per_method():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--rows", "autoencoder:naive", "agad:naive",
         "--batch-size", "8", "--repeats", "1", "--anomalies", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("agad:", "autoencoder:"))]
    assert [r[0] for r in rows] == ["autoencoder:naive", "agad:naive"]
    for row in rows:
        numbers = [float(v) for v in row[1:]]
        assert all(v > 0 for v in numbers) and numbers[-1] < 5  # fraction of the matmul rate


def test_quality_benchmark_scores_every_method_also_by_reconstruction(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--dataset", "digits", "--methods", "agad", "ganomaly",
         "--classes", "0", "--epochs", "1", "--batch-size", "64", "--parallel", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    tables = result.stdout.split("\ndigits, normal_class protocol")[1:]
    assert len(tables) == 2  # each method's own score, then ‖x − G(x)‖₂ for all

    def row(table: str, method: str) -> list[str]:
        (line,) = [line for line in table.splitlines() if line.startswith(f"| {method} |")]
        return [cell.strip() for cell in line.strip("|").split("|")]

    own, same = tables
    # AGAD's own score is ‖x − G(x)‖₂: rescoring its selected checkpoint gives its reported AUROC
    assert float(row(same, "agad")[1]) == float(row(own, "agad")[1].split()[0])
    for method in ("agad", "ganomaly"):
        assert 0.0 <= float(row(same, method)[1]) <= 1.0
