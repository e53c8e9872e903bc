"""The core trains where only torch and the light dependencies exist: Ray and Optuna unimportable."""

from __future__ import annotations

import json
import subprocess
import sys

# Put in place before anything else is imported (python -c): any import of ray or optuna fails,
# as on a bare GPU box with only torch, numpy, scikit-learn, pillow, pyarrow, tensorboard, tqdm.
BLOCKER = """
import runpy, sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('ray', 'optuna'):
            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)
sys.meta_path.insert(0, NoRay())
sys.argv = ['raygan', *sys.argv[1:]]
runpy.run_module('raygan', run_name='__main__')
"""


def run_without_ray(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=timeout)


def test_blocker_really_blocks_ray():
    result = subprocess.run([sys.executable, "-c", BLOCKER.split("sys.argv")[0] + "import ray"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "No module named 'ray'" in result.stderr


def test_train_runs_without_ray_and_optuna(tmp_path):
    result = run_without_ray(
        "train", "--dataset", "digits", "--normal-class", "3", "--gamma", "0.1", "--backbone", "naive",
        "--latent-size", "16", "--epochs", "1", "--batch-size", "48", "--threads", "1", "--no-progress",
        "--out", str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 <= summary["auroc"] <= 1 and summary["epochs"] == 1
    assert (tmp_path / "run" / "checkpoints" / "selected.pt").exists()


def test_distributed_flags_without_ray_are_one_clear_line(tmp_path):
    result = run_without_ray("train", "--dataset", "digits", "--workers", "2", "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "ray" in result.stderr.lower()
