"""The core trains where only torch and the light dependencies exist: Ray and Optuna unimportable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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


def test_cli_train_end_to_end_on_digits_without_ray_or_optuna(tmp_path):
    """`raygan train` as a user runs it, on a machine where only the core's dependencies import:
    the JSON summary, the networks' cost said first, config, metrics, checkpoint, TensorBoard."""
    import re

    import torch

    from raygan.core.config import RunConfig

    out = tmp_path / "run"
    result = run_without_ray(
        "train", "--method", "agad", "--dataset", "digits", "--normal-class", "3", "--backbone", "naive",
        "--latent-size", "16", "--epochs", "2", "--batch-size", "48", "--gamma", "0.1", "--out", str(out),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("auroc", "auroc_last", "auroc_val", "selected_epoch", "images_per_s", "params_generator"):
        assert key in summary
    assert summary["params_generator"] > 0 and 0 <= summary["auroc"] <= 1 and summary["epochs"] == 2
    # the networks and their cost, said at the start on stderr (stdout's last line stays the JSON)
    said = re.search(r"^raygan train: agad: generator naive ([\d.]+) M parameters, discriminator vgg [\d.]+ M; "
                     r"about (\d+) MB per checkpoint$", result.stderr, re.M)
    assert said and float(said[1]) == round(summary["params_generator"] / 1e6, 2), result.stderr
    assert abs((out / "checkpoints" / "selected.pt").stat().st_size / 1e6 - int(said[2])) <= 1
    saved_config = json.loads((out / "config.json").read_text())
    assert saved_config["loss"]["contextual_adversarial_weight"] == 15.0  # resolved paper default
    assert RunConfig.from_dict(saved_config).stable_hash() == summary["config_hash"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    torch.load(out / "checkpoints" / "selected.pt", weights_only=True)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"loss/g_con_normal", "loss/d_loss", "epoch/auroc_val", "epoch/auroc_test", "hparam/auroc"} <= set(tags["scalars"])
    assert {"reconstructions/test_normal", "reconstructions/test_anomalous"} <= set(tags["images"])
    assert {"scores/test_normal", "scores/test_anomalous"} <= set(tags["histograms"])
    assert len(events.Scalars("epoch/auroc_test")) == 2
    from tensorboard.plugins.hparams import plugin_data_pb2

    plugin = events.PluginTagToContent("hparams")
    assert plugin, "no HParams entry"
    session = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["model.backbone"].string_value == "naive"


def test_distributed_flags_without_ray_are_one_clear_line(tmp_path):
    result = run_without_ray("train", "--dataset", "digits", "--workers", "2", "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "ray" in result.stderr.lower()


def test_report_of_a_committed_study_without_ray_or_optuna(tmp_path):
    """Reading a study's results needs neither: `raygan report` prints a committed grid study's
    tables (paper layout, verdicts, head-to-head, the same-score table kept in same_score.json) as
    committed."""
    folder = ROOT / "results" / "one_class-cpu"  # verdicts, a head-to-head, same_score.json
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    result = run_without_ray("report", str(copy), "--same-score")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (folder / "report.md").read_text()


def test_study_list_without_ray_or_optuna():
    """`raygan study list` imports every study script: they import the study layer, not the driver."""
    result = run_without_ray("study", "list")
    assert result.returncode == 0, result.stderr
    names = {line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"bn_ablation", "hpo", "one_class", "supervision"} <= names
