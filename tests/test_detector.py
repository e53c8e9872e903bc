"""Using a trained detector: `raygan score` end to end on a tiny digits run, and exported programs
(torch.export, ONNX) that give the checkpoint's own scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inprocess import raygan

from raygan.cli.main import main
from raygan.core.config import RunConfig
from raygan.data import build_split, load_dataset, split_tensors
from raygan.engine.checkpoints import load_checkpoint, save_checkpoint
from raygan.engine.detector import Detector, export_onnx, export_program, load_program, onnx_available
from raygan.engine.loop import load_split_tensors, train

RUN = {
    "method": "imbalance_gan",
    "data": {"dataset": "digits", "class_index": 3, "anomaly_fraction": 0.2},
    "model": {"latent_size": 16},
    "train": {"epochs": 2, "batch_size": 64},
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = RunConfig.from_dict(RUN)
    result = train(cfg, out_dir=out)
    return out, result


@pytest.fixture(scope="module")
def detector(trained_run):
    out, _ = trained_run
    return Detector.from_checkpoint(out / "checkpoints" / "selected.pt")


def test_checkpoint_stores_the_validation_threshold_and_preprocessing(trained_run, detector):
    out, result = trained_run
    saved = load_checkpoint(out / "checkpoints" / "selected.pt")
    selected = result["history"][result["selected_epoch"]]
    assert saved["threshold"]["value"] == selected["threshold"]
    assert saved["threshold"]["rule"] == "youden_j" and saved["threshold"]["epoch"] == result["selected_epoch"]
    assert saved["preprocessing"] == {"image_size": 32, "channels": 1, "max_value": 16, "dataset": "digits"}
    # the threshold maximises TPR − FPR on the validation split of that epoch's networks
    tensors, _ = load_split_tensors(RunConfig.from_dict(RUN))
    scores = detector.score(tensors.val_x)
    flagged = scores >= saved["threshold"]["value"]
    anomalous = tensors.val_y == 1
    tpr = float((flagged & anomalous).sum() / anomalous.sum())
    fpr = float((flagged & ~anomalous).sum() / (~anomalous).sum())
    assert tpr == pytest.approx(saved["threshold"]["tpr"]) and fpr == pytest.approx(saved["threshold"]["fpr"])
    for value in torch.unique(scores):  # no other threshold does better
        other = scores >= value
        j = float((other & anomalous).sum() / anomalous.sum() - (other & ~anomalous).sum() / (~anomalous).sum())
        assert j <= tpr - fpr + 1e-9


def test_score_cli_end_to_end_on_a_tiny_digits_run(trained_run, tmp_path):
    from PIL import Image

    out, _ = trained_run
    cfg = RunConfig.from_dict(RUN)
    dataset = load_dataset("digits")
    split = build_split(dataset, cfg.data)
    tensors = split_tensors(dataset, split, cfg.data.image_size)
    pick = np.arange(0, len(split.test.indices), 40)
    raw = dataset.test_images[split.test.indices[pick]][:, 0]  # N×8×8, pixel values 0..16
    np.save(tmp_path / "digits.npy", raw)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):  # 8-bit files: 0..255
        Image.fromarray((raw[i].astype(np.float32) * 255 / 16).round().astype(np.uint8)).save(folder / f"d{i}.png")
    csv_path, maps = tmp_path / "scores.csv", tmp_path / "maps"
    result = raygan("score", "--checkpoint", str(out / "checkpoints" / "selected.pt"),
                    str(tmp_path / "digits.npy"), str(folder), "--out", str(csv_path), "--save-maps", str(maps))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["path"] for r in rows] == [f"{tmp_path / 'digits.npy'}[{i}]" for i in range(len(raw))] + [
        str(folder / f"d{i}.png") for i in range(3)]
    scores = torch.tensor([float(r["score"]) for r in rows])
    # The .npy rows went through the run's own preprocessing: the same scores as the test split.
    detector = Detector.from_checkpoint(out / "checkpoints" / "selected.pt")
    expected = detector.score(tensors.test_x[pick])
    torch.testing.assert_close(scores[: len(raw)], expected, rtol=1e-5, atol=1e-4)
    # PNGs of the same digits (rounded to 8 bits) score almost alike
    torch.testing.assert_close(scores[len(raw):], expected[:3], rtol=0.02, atol=0.0)
    threshold = detector.threshold["value"]
    decisions = [r["decision"] for r in rows[: len(raw)]]
    assert decisions == ["anomalous" if float(s) >= threshold else "normal" for s in expected]
    assert f"{len(rows)} images" in result.stderr
    written = sorted(p.name for p in maps.iterdir())
    assert len(written) == 2 * len(rows)
    with Image.open(maps / written[0]) as image:
        assert image.size == (32, 32)


def _error(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_score_bad_input_is_one_clear_line(trained_run, tmp_path, capsys):
    out, _ = trained_run
    checkpoint = str(out / "checkpoints" / "selected.pt")
    np.save(tmp_path / "colour.npy", np.zeros((2, 8, 8, 3), dtype=np.uint8))
    np.save(tmp_path / "one.npy", np.zeros((8, 8), dtype=np.uint8))
    np.save(tmp_path / "scale.npy", np.full((2, 8, 8), 255, dtype=np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    saved = load_checkpoint(out / "checkpoints" / "selected.pt")
    del saved["threshold"]
    old = tmp_path / "old.pt"
    save_checkpoint(old, {k: v for k, v in saved.items() if k != "format"})
    for args, message in (
        ([checkpoint, str(tmp_path / "colour.npy")], "shape 2×8×8×3; this detector takes N×H×W"),
        ([checkpoint, str(tmp_path / "one.npy")], "shape 8×8"),
        ([checkpoint, str(tmp_path / "scale.npy")], "pixels in 0..16"),
        ([checkpoint, str(tmp_path / "broken.png")], "cannot read image"),
        ([checkpoint, str(tmp_path / "missing.png")], "does not exist"),
        ([str(old), str(tmp_path / "one.npy")], "has no threshold"),
        ([str(tmp_path / "missing.pt"), str(tmp_path / "one.npy")], "missing.pt does not exist"),
    ):
        assert message in _error(["score", "--checkpoint", *args], capsys)


def test_exported_program_gives_the_checkpoints_scores(detector, tmp_path):
    path = tmp_path / "detector.pt2"
    export_program(detector, path)
    program, metadata = load_program(path)
    assert metadata["threshold"] == detector.threshold and metadata["preprocessing"] == detector.preprocessing
    module = program.module()
    g = torch.Generator().manual_seed(5)
    for batch in (1, 7):  # the batch size is dynamic
        x = torch.rand(batch, 1, 32, 32, generator=g) * 2 - 1
        with torch.no_grad():
            torch.testing.assert_close(module(x), detector.score(x), rtol=1e-5, atol=1e-5)


def test_export_cli_writes_pt2_and_onnx_when_available(trained_run, tmp_path, capsys):
    out, _ = trained_run
    assert main(["export", "--checkpoint", str(out / "checkpoints" / "selected.pt"), "--out",
                 str(tmp_path / "d.pt2")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"][0] == str(tmp_path / "d.pt2") and (tmp_path / "d.pt2").exists()
    assert (len(summary["written"]) == 2) == onnx_available()
    assert all(Path(path).is_file() for path in summary["written"])
    assert "written as .pt2 files" in _error(["export", "--checkpoint", str(out / "checkpoints" / "selected.pt"),
                                              "--out", str(tmp_path / "d.bin")], capsys)


def test_onnx_export_gives_the_checkpoints_scores(detector, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    path = export_onnx(export_program(detector, tmp_path / "detector.pt2"), tmp_path / "detector.onnx")
    session = onnxruntime.InferenceSession(str(path))
    x = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1
    (scores,) = session.run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(scores), detector.score(x), rtol=1e-5, atol=1e-4)
