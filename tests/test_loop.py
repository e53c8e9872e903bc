"""The epoch loop: selection on validation only, determinism, resume, NaN stops, TensorBoard."""

from __future__ import annotations

import json
import math

import pytest
import torch

from raygan.core.config import RunConfig
from raygan.engine.checkpoints import LAST
from raygan.engine.loop import NonFiniteLoss, load_split_tensors, select_epoch, train

BASE = {
    "method": "agad",
    "data": {"dataset": "digits", "class_index": 3, "anomaly_fraction": 0.1},
    "model": {"backbone": "naive", "latent_size": 16},
    "train": {"epochs": 2, "batch_size": 48},
}


def config(**overrides) -> RunConfig:
    values = json.loads(json.dumps(BASE))
    for section, fields in overrides.items():
        if isinstance(fields, dict):
            values.setdefault(section, {}).update(fields)
        else:
            values[section] = fields
    return RunConfig.from_dict(values)


@pytest.fixture(scope="module")
def digits_tensors():
    tensors, _ = load_split_tensors(config())
    return tensors


def test_selection_uses_validation_never_test():
    history = [
        {"epoch": 0, "auroc_val": 0.7, "val_loss": 3.0, "auroc_test": 0.99},
        {"epoch": 1, "auroc_val": 0.9, "val_loss": 2.0, "auroc_test": 0.60},
        {"epoch": 2, "auroc_val": 0.9, "val_loss": 1.0, "auroc_test": 0.80},
    ]
    assert select_epoch(history, "val_auroc")["epoch"] == 1  # earliest of the tied best
    assert select_epoch(history, "val_loss")["epoch"] == 2
    assert select_epoch(history, "last")["epoch"] == 2


def test_same_config_same_result(digits_tensors):
    a = train(config(), tensors=digits_tensors)
    b = train(config(), tensors=digits_tensors)
    assert abs(a["auroc"] - b["auroc"]) < 1e-6 and abs(a["auroc_last"] - b["auroc_last"]) < 1e-6
    assert a["history"][-1]["loss_g_loss"] == pytest.approx(b["history"][-1]["loss_g_loss"], rel=1e-6)
    assert {"auroc", "auroc_last", "auroc_val", "selected_epoch", "images_per_s", "params_generator"} <= set(a)
    assert a["selected_epoch"] in (0, 1) and 0 <= a["auroc"] <= 1
    # the trained detector timed at batch 1 and 256 (what the backbones report compares)
    assert a["score_ms_per_image_b1"] > 0 and a["score_ms_per_image_b256"] > 0


def test_interrupted_run_resumes_to_the_same_result(tmp_path, digits_tensors):
    cfg = config(train={"epochs": 3, "batch_size": 48})
    reference = train(cfg, tensors=digits_tensors)

    def crash_after_first_epoch(record, checkpoint):
        if record["epoch"] == 0:
            assert checkpoint is not None and checkpoint.exists()
            raise KeyboardInterrupt  # as if the process were killed after the checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "run", on_epoch_end=crash_after_first_epoch, tensors=digits_tensors)
    saved = torch.load(tmp_path / "run" / "checkpoints" / LAST, weights_only=True)
    assert saved["epoch"] == 1 and set(saved["method"]) >= {"generator_state", "discriminator_state", "optimizer_generator", "optimizer_discriminator"}
    epochs_run = []
    resumed = train(cfg, out_dir=tmp_path / "run", tensors=digits_tensors,
                    on_epoch_end=lambda record, _: epochs_run.append(record["epoch"]))
    assert epochs_run == [1, 2]  # nothing repeated, nothing lost
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]
    for got, want in zip(resumed["history"], reference["history"]):
        assert got["auroc_test"] == pytest.approx(want["auroc_test"], abs=1e-6)


def test_resume_refuses_a_different_config(tmp_path, digits_tensors):
    train(config(train={"epochs": 1, "batch_size": 48}), out_dir=tmp_path, tensors=digits_tensors)
    from raygan.core.errors import RayganError

    with pytest.raises(RayganError, match="different configuration.*train.lr"):
        train(config(train={"epochs": 1, "batch_size": 48, "lr": 1e-3}), out_dir=tmp_path, tensors=digits_tensors)


def test_resume_accepts_a_checkpoint_written_before_a_method_field_existed(tmp_path, digits_tensors):
    cfg = config()

    def crash_after_first_epoch(record, checkpoint):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path, on_epoch_end=crash_after_first_epoch, tensors=digits_tensors)
    path = tmp_path / "checkpoints" / LAST
    saved = torch.load(path, weights_only=True)
    # as written before loss.contextual_adversarial_wrap existed: that run trained with eq. 8's W
    assert saved["config"]["loss"].pop("contextual_adversarial_wrap") == "negative"
    torch.save(saved, path)
    epochs_run = []
    train(cfg, out_dir=tmp_path, tensors=digits_tensors, on_epoch_end=lambda record, _: epochs_run.append(record["epoch"]))
    assert epochs_run == [1]


def test_nan_loss_stops_with_the_term_and_step(digits_tensors):
    digits_tensors_nan = type(digits_tensors)(**{**digits_tensors.__dict__, "train_x": digits_tensors.train_x.clone()})
    digits_tensors_nan.train_x[:] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"loss term g_adv_normal became nan at epoch 0, step 0 \(global step 1\)"):
        train(config(train={"log_every": 1}), tensors=digits_tensors_nan)


def test_nan_loss_read_once_per_window_names_the_window_it_appeared_in(digits_tensors):
    """Loss terms are read every train.log_every steps; a NaN in one batch is caught at the end of
    its window, located to that window's steps (here: step 2 of epoch 0, in the window 2-3)."""
    from raygan.data import AnomalyBatchSampler

    cfg = config(method="autoencoder", train={"epochs": 1, "batch_size": 16, "log_every": 2})
    normal = torch.nonzero(digits_tensors.train_y == 0).flatten()  # the autoencoder trains on normals only
    sampler = AnomalyBatchSampler(digits_tensors.train_y[normal], 16, seed=cfg.seed)
    assert len(sampler) >= 4
    normals, _ = sampler.global_batches()[2]  # epoch 0, step 2 (each normal appears once an epoch)
    poisoned = type(digits_tensors)(**{**digits_tensors.__dict__, "train_x": digits_tensors.train_x.clone()})
    poisoned.train_x[normal[int(normals[0])]] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"loss term g_con became nan at epoch 0, steps 2-3 \(global steps 3-4\)"):
        train(cfg, tensors=poisoned)


def test_val_auroc_selection_without_validation_anomalies_is_explained(digits_tensors):
    from raygan.core.errors import RayganError

    tensors = type(digits_tensors)(**{**digits_tensors.__dict__})
    keep = tensors.val_y == 0
    tensors.val_x, tensors.val_y = tensors.val_x[keep], tensors.val_y[keep]
    with pytest.raises(RayganError, match="--select val_loss"):
        train(config(train={"epochs": 1, "batch_size": 48}), tensors=tensors)
    result = train(config(train={"epochs": 1, "batch_size": 48, "select": "val_loss"}), tensors=tensors)
    assert math.isnan(result["auroc_val"]) and 0 <= result["auroc"] <= 1


def test_cli_train_bad_input_is_one_clear_message(tmp_path, capsys):
    from raygan.cli.main import main

    bad_config = tmp_path / "c.json"
    bad_config.write_text(json.dumps({"model": {"bakbone": "naive"}}))
    for args, message in (
        (["--config", str(bad_config)], "unknown config key model.bakbone"),
        (["--method", "agad", "--image-size", "48"], "data.image_size must be one of 32, 64, 128"),
        (["--method", "ganomaly", "--backbone", "unet"], "use backbone 'ganomaly'"),
    ):
        code = main(["train", *args])  # the CLI's own entry point, in-process (python -m raygan calls it)
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
