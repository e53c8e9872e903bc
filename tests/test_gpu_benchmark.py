"""benchmarks/gpu.py --quick on CPU (no Ray, no Optuna), its device profile, and the cost estimates
that --dry-run prints from it and from the CPU calibration."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from raygan.engine.cost import CPU_MEASURED, DeviceProfile, cpu_seconds_range, gpu_estimate

ROOT = Path(__file__).resolve().parents[1]


def no_ray_path(tmp_path: Path) -> str:
    """A PYTHONPATH entry whose ray and optuna packages fail to import, in every child process too."""
    for name in ("ray", "optuna"):
        (tmp_path / "blocked" / name).mkdir(parents=True)
        (tmp_path / "blocked" / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('No module named {name!r} (blocked)', name={name!r})\n")
    return str(tmp_path / "blocked")


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    out = tmp / "profile.json"
    env = {**__import__("os").environ, "PYTHONPATH": no_ray_path(tmp)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick", "--device", "cpu", "--profile-out", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_quick_run_prints_every_part_and_writes_a_profile(quick_profile):
    path, stdout = quick_profile
    for part in ("1. training and scoring", "K=1:", "K=2:", "best packing", "4. same seed in 3 processes"):
        assert part in stdout
    profile = json.loads(path.read_text())
    # Every part ran and wrote its fields, each a finite number of the right sign. No bound on a rate
    # or a ratio: on a shared machine any of them can come out anywhere (the fraction of the matmul
    # rate was once 6.8 on a quick run); those belong in the benchmark's output, not in a test.
    def positive(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0

    assert positive(profile["matmul_flop_per_s"]["fp32"]) and positive(profile["matmul_flop_per_s"]["bf16"])
    assert [(r["row"], r["precision"]) for r in profile["throughput"]] == [("agad:naive", "fp32"), ("agad:naive", "bf16")]
    for row in profile["throughput"]:
        for field in ("train_images_per_s", "score_ms_per_image_b1", "score_ms_per_image_b256", "flop_per_step",
                      "achieved_flop_per_s", "fraction_of_matmul"):
            assert positive(row[field]), (field, row[field])
    trial = profile["trial"]
    assert trial["epochs"] == 1 and all(positive(trial[k]) for k in ("startup_s", "data_s", "train_s", "eval_s"))
    assert 0 <= trial["auroc"] <= 1
    assert [p["k"] for p in profile["packing"]] == [1, 2] and all(len(p["peak_memory_mb"]) == p["k"] for p in profile["packing"])
    for p in profile["packing"]:
        assert positive(p["wall_s"]) and positive(p["trials_per_hour"]) and all(positive(m) for m in p["peak_memory_mb"])
    assert profile["best_packing"]["k"] in (1, 2) and positive(profile["best_packing"]["speedup_over_one"])
    # the same seed on CPU (deterministic algorithms): the same AUROC in every process
    assert profile["same_seed_auroc_spread"] == 0


def test_dry_run_prints_gpu_hours_from_the_profile(quick_profile, tmp_path):
    path, _ = quick_profile
    env = {**__import__("os").environ, "PYTHONPATH": no_ray_path(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "raygan", "study", "run", "bn_ablation", "--profile", "smoke", "--dry-run",
         "--device-profile", str(path), "--gpus", "2"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 6 and summary["gpus"] == 2 and summary["trials_per_gpu"] in (1, 2)
    assert summary["estimated_gpu_hours"] > 0 and summary["estimated_wall_hours"] >= summary["estimated_gpu_hours"] / 2 - 1e-4
    low, high = summary["estimated_worker_hours_range"]
    assert 0 < low <= summary["estimated_worker_hours"] <= high
    assert "GPU-hours" in result.stdout and "a --quick profile" in result.stdout


def test_profile_trial_is_reproduced_by_its_own_estimate(quick_profile):
    path, _ = quick_profile
    profile = DeviceProfile.load(path)
    data = json.loads(path.read_text())
    trial = data["trial"]
    measured = trial["startup_s"] + trial["data_s"] + trial["train_s"] + trial["eval_s"]
    assert profile.seconds_alone(trial["config"]) == pytest.approx(measured, rel=1e-6)
    twice = {**trial["config"], "train": {**trial["config"]["train"], "epochs": 2}}
    assert profile.seconds_alone(twice) > profile.seconds_alone(trial["config"])
    estimate = gpu_estimate(profile, [trial["config"]] * 4, gpus=2)
    assert estimate["gpu_hours"] == pytest.approx(4 * measured / profile.packing_gain / 3600, rel=1e-6)


def test_bad_device_profile_is_one_clear_line(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{}")
    result = subprocess.run([sys.executable, "-m", "raygan", "study", "run", "bn_ablation", "--dry-run",
                             "--device-profile", str(bad)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "is not a device profile written by benchmarks/gpu.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_cpu_estimate_reproduces_the_calibration_trials():
    """Issue 17: one real Fashion-MNIST epoch of AGAD naive took 77 s and of Skip-GANomaly 168 s
    (one thread, two trials side by side); the estimate's range covers both."""
    base = {"data": {"dataset": "fashion_mnist"}, "train": {"epochs": 1, "batch_size": 64}}
    for method, backbone, measured in (("agad", "naive", 77), ("skip_ganomaly", "unet", 168)):
        low, high = cpu_seconds_range({**base, "method": method, "model": {"backbone": backbone}})
        assert low - 10 <= measured <= high, (method, low, high)
    low, high = cpu_seconds_range({**base, "method": "agad", "model": {"backbone": "unetpp"}})
    assert high > low  # an unmeasured backbone is a range
    assert set(CPU_MEASURED) == {"naive", "skip_ganomaly"}
