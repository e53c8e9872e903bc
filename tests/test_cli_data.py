"""`raygan data ...` as a user runs it: JSON on the last line, clean errors. `python -m raygan` is run
as a real subprocess once (the front door); the rest call the same `raygan.cli.main` in-process
(a new interpreter and torch import cost seconds per call)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures import write_idx_dataset
from inprocess import raygan


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "raygan", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "data" in result.stdout


def test_split_prints_counts_as_json_last_line():
    result = raygan("data", "split", "digits", "--protocol", "normal_class", "--class", "3", "--gamma", "0.1", "--seed", "0")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    # digits class 3: 128 training images, 13 to validation, 115 normal -> a = round(115·.1/.9) = 13
    assert counts["train"] == {"normal": 115, "anomalous": 13}
    assert counts["val"]["normal"] == 13
    assert counts["test"] == {"normal": 55, "anomalous": 484}


def test_describe_reports_location_and_per_class_counts(tmp_path):
    write_idx_dataset(tmp_path / "mnist-files")
    result = raygan("data", "describe", "mnist", "--data-root", str(tmp_path / "mnist-files"), "--no-download")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "mnist-files") in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == 10 and all(r[-2:] == ["6", "2"] for r in rows)


@pytest.mark.parametrize(
    "args,message",
    [
        (["data", "split", "no_such_set", "--class", "1"], "unknown data set 'no_such_set'"),
        (["data", "split", "digits", "--class", "11"], "class_index 11 is not a class of digits"),
        (["data", "split", "digits", "--class", "1", "--gamma", "1.0"], "gamma) must be in [0, 1); got 1.0"),
        (["data", "split", "digits", "--class", "1", "--gamma", "-0.1"], "got -0.1"),
        (["data", "split", "digits", "--class", "1", "--anomaly-source", "cats"], "anomaly_source must be 'all' or a class index"),
        (["data", "describe", "mnist", "--no-download", "--data-root", "/nonexistent"], "'mnist' not found"),
        (["data", "describe", "image_folder"], "needs --data-root"),
    ],
)
def test_bad_input_gives_a_clear_error_without_traceback(args, message):
    result = raygan(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_file_error_via_cli(tmp_path):
    write_idx_dataset(tmp_path / "d")
    path = tmp_path / "d" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    result = raygan("data", "describe", "mnist", "--data-root", str(tmp_path / "d"), "--no-download")
    assert result.returncode == 2 and "t10k-images-idx3-ubyte.gz" in result.stderr and "Traceback" not in result.stderr
    assert "Downloads are off (--no-download)" in result.stderr and "fetched again" not in result.stderr
