"""Ray Train (DDP over gloo) through the CLI: 2 workers, clear scaling errors, resume after a kill.
(A worker's error keeping its kind through Ray Train: test_study_operator.py, in a DDP study.)

One local Ray instance is shared by the whole session (`ray_cluster`); driver subprocesses join it
with --address, so killing a driver never leaves Ray processes of its own behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from raygan.core.config import RunConfig
from raygan.engine.loop import train

# A configuration whose test AUROC follows the same trajectory whatever the thread count or the
# number of workers (measured: 0.923 0.899 0.824 0.769 in one process, 0.923 0.899 0.822 0.769 with
# two workers), so that "as good as one process" can be checked epoch by epoch.
RUN = ["--method", "autoencoder", "--dataset", "digits", "--normal-class", "0", "--backbone", "naive",
       "--latent-size", "16", "--batch-size", "32", "--lr", "0.001"]


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    return subprocess.Popen([sys.executable, "-m", "raygan", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--workers", "2", "--sync-bn"], "--sync-bn needs GPUs"),
        (["--workers", "3"], "batch_size 32 is not divisible by --workers 3"),
        (["--sync-bn"], "add --workers N"),
    ],
)
def test_scaling_errors_are_clear_and_come_before_ray_starts(args, message):
    result = subprocess.run([sys.executable, "-m", "raygan", "train", *RUN, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_killed_two_worker_run_resumes_from_its_checkpoint_and_matches_one_process(ray_cluster, tmp_path):
    out = tmp_path / "run"
    args = (*RUN, "--epochs", "3", "--workers", "2", "--address", ray_cluster, "--out", str(out))
    driver = cli(*args, start_new_session=True)
    metrics_file = out / "metrics.json"
    deadline = time.time() + 600
    first_epoch = None
    while time.time() < deadline and driver.poll() is None:
        if metrics_file.exists():
            try:
                history = json.loads(metrics_file.read_text())["history"]
            except (json.JSONDecodeError, KeyError):
                history = []
            if history and list(out.glob("ray/train-*/checkpoint_*")):
                first_epoch = history[0]
                break
        time.sleep(0.2)
    assert first_epoch is not None, "no checkpoint before the deadline"
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: the session's Ray cluster stays up
    driver.communicate()

    two = finish(cli(*args))
    history = json.loads(metrics_file.read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]  # nothing lost, nothing repeated
    assert history[0]["train_seconds"] == first_epoch["train_seconds"]  # epoch 0 was not run again
    assert two["epochs"] == 3 and two["workers"] == 2

    # the two-worker run, killed and resumed, learns what one process does with the same config
    one = train(RunConfig.from_dict(json.loads((out / "config.json").read_text())))
    assert set(one) - {"history", "counts"} <= set(two)  # same result keys, plus workers
    # Per-worker BN statistics (16 images each) make the runs differ slightly, epoch by epoch.
    for got, want in zip(history, one["history"]):
        assert abs(got["auroc_test"] - want["auroc_test"]) < 0.03, (got["auroc_test"], want["auroc_test"])
    assert two["auroc"] > 0.85 and abs(two["auroc"] - one["auroc"]) < 0.03
    assert (out / "checkpoints" / "last.pt").exists() and list((out / "tensorboard").glob("events.out.tfevents.*"))
