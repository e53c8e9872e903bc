"""The benchmark scripts still run (tiny settings; the figures themselves live in docs/benchmarks.md)."""

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
