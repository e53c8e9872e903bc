"""Hostile but honest input to every front door: each subcommand of `raygan` and the study scripts'
shared entry point, walked with a table of bad inputs. Each must end with one line on standard
error naming what is wrong (exit 2, never 0 or Python's 1), no traceback, nothing trained and no
Ray started. Then the cases that once lost data or gave a silently wrong answer, each with the
behaviour it must keep, and the boundary for unexpected errors (one line naming a log file).

Everything runs in-process through the entry points (tests/inprocess.py): a case costs
milliseconds, not an interpreter and a torch import.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from inprocess import raygan, study_script

from raygan.core.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
EXPORT = ROOT / "results" / "one_class-cpu"  # a committed study export: records, Parquet, report
OTHER_EXPORT = ROOT / "results" / "supervision-cpu"
# If a case slipped through validation it would train: keep that cheap, so the failure is quick.
CHEAP = ["--method", "autoencoder", "--backbone", "naive", "--latent-size", "8", "--epochs", "1",
         "--batch-size", "64"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/raygan-hostile-pickle-ran",))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> dict[str, Path]:
    """The files hostile inputs point at: a real tiny run's checkpoint beside broken ones, bad
    configs and arrays, a regular file, a study export."""
    from raygan.engine.loop import train

    d = tmp_path_factory.mktemp("hostile")
    run = d / "run"
    train(RunConfig.from_dict({"method": "autoencoder", "data": {"dataset": "digits", "class_index": 1},
                               "model": {"backbone": "naive", "latent_size": 8},
                               "train": {"epochs": 1, "batch_size": 64}}), out_dir=run)
    (d / "evil.pt").write_bytes(pickle.dumps(_Evil()))
    torch.save({"format": 1, "x": _Evil()}, d / "evil_zip.pt")  # a torch zip whose pickle runs code
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], d / "list.pt")
    torch.save({"weights": torch.zeros(2)}, d / "other.pt")  # a checkpoint, but not raygan's
    (d / "a_dir.pt2").mkdir()
    (d / "file").write_text("a regular file\n")
    (d / "users" / "bn_ablation").mkdir(parents=True)  # a folder of the user's own
    (d / "users" / "bn_ablation" / "config.txt").write_text("mine")
    (d / "array.json").write_text("[1, 2]")
    (d / "string.json").write_text('"train"')
    (d / "broken.json").write_text('{"train": ')
    (d / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (d / "nan_config.json").write_text('{"train": {"lr": NaN}}')
    (d / "section_list.json").write_text('{"train": [1]}')
    np.save(d / "ok.npy", np.zeros((2, 8, 8)))
    np.save(d / "nan.npy", np.full((2, 8, 8), np.nan))
    np.save(d / "five_d.npy", np.zeros((1, 1, 1, 8, 8)))
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "text.npy").write_text("not an array")
    (d / "garbage.png").write_bytes(b"\x89PNG garbage")
    (d / "profile.json").write_text('{"device": "x"}')
    shutil.copytree(EXPORT, d / "export")
    named = {p.stem: p for p in d.iterdir() if p.name not in ("run", "export", "users")}
    return {**named, "dir": d, "checkpoint": run / "checkpoints" / "selected.pt", "export": d / "export",
            "foreign": d / "users" / "bn_ablation"}


def _train(*args):
    return ["train", *CHEAP, *args]


def _score(ctx, *args, checkpoint=None):
    return ["score", "--checkpoint", str(checkpoint or ctx["checkpoint"]), *args]


# (case id, argv from ctx and the case's own tmp dir, a phrase the one line must hold)
RAYGAN_CASES = [
    ("no command", lambda c, t: [], "required"),
    ("unknown command", lambda c, t: ["fly"], "invalid choice"),
    ("data without subcommand", lambda c, t: ["data"], "required"),
    ("data list unknown flag", lambda c, t: ["data", "list", "--all"], "--all"),
    ("data describe unknown set", lambda c, t: ["data", "describe", "no_such_set"], "no_such_set"),
    ("data describe missing files", lambda c, t: ["data", "describe", "mnist", "--no-download", "--data-root",
                                                  str(t / "none")], "mnist"),
    ("data describe folder is a file", lambda c, t: ["data", "describe", "image_folder", "--data-root",
                                                     str(c["file"])], "file"),
    ("data split class out of range", lambda c, t: ["data", "split", "digits", "--class", "99"], "class_index 99"),
    ("data split gamma nan", lambda c, t: ["data", "split", "digits", "--gamma", "nan"], "anomaly_fraction"),
    ("data split val fraction inf", lambda c, t: ["data", "split", "digits", "--val-fraction", "inf"], "val_fraction"),
    ("data split negative seed", lambda c, t: ["data", "split", "digits", "--seed", "-1"], "seed"),
    ("data split not a number", lambda c, t: ["data", "split", "digits", "--gamma", "lots"], "gamma"),
    ("models unknown flag", lambda c, t: ["models", "--bogus"], "--bogus"),
    ("train lr nan", lambda c, t: _train("--lr", "nan"), "train.lr must be a finite number"),
    ("train lr inf", lambda c, t: _train("--lr", "inf"), "train.lr must be a finite number"),
    ("train lr -inf", lambda c, t: _train("--lr=-inf"), "train.lr must be a finite number"),
    ("train epsilon nan", lambda c, t: _train("--reciprocal-epsilon", "nan"), "loss.reciprocal_epsilon"),
    ("train weight nan", lambda c, t: _train("--contextual-weight", "nan"), "loss.contextual_weight"),
    ("train weight inf", lambda c, t: _train("--adversarial-weight", "inf"), "loss.adversarial_weight"),
    ("train beta nan", lambda c, t: _train("--beta1", "nan"), "train.beta1"),
    ("train reset threshold negative", lambda c, t: _train("--discriminator-reset-threshold", "-5"),
     "loss.discriminator_reset_threshold"),
    ("train normal and anomaly class", lambda c, t: _train("--normal-class", "3", "--anomaly-class", "4"),
     "--normal-class and --anomaly-class"),
    ("train normal class, anomaly protocol", lambda c, t: _train("--normal-class", "3", "--protocol", "anomaly_class"),
     "contradicts --protocol"),
    ("train anomaly class, other class", lambda c, t: _train("--anomaly-class", "3", "--class", "4"),
     "contradicts --class"),
    ("train config array", lambda c, t: _train("--config", str(c["array"])), "JSON list"),
    ("train config string", lambda c, t: _train("--config", str(c["string"])), "JSON str"),
    ("train config broken", lambda c, t: _train("--config", str(c["broken"])), "not valid JSON"),
    ("train config binary", lambda c, t: _train("--config", str(c["binary"])), "--config"),
    ("train config missing", lambda c, t: _train("--config", str(t / "none.json")), "cannot read --config"),
    ("train config a directory", lambda c, t: _train("--config", str(t)), "cannot read --config"),
    ("train config NaN", lambda c, t: _train("--config", str(c["nan_config"])), "train.lr must be a finite number"),
    ("train config section a list", lambda c, t: _train("--config", str(c["section_list"])), "--config"),
    ("train out is a file", lambda c, t: _train("--out", str(c["file"])), "is a file"),
    ("train out under a file", lambda c, t: _train("--out", str(c["file"] / "run")), "not a directory"),
    ("train out a folder of other files", lambda c, t: _train("--out", str(c["foreign"])), "not a raygan run"),
    ("train epochs 0", lambda c, t: _train("--epochs", "0"), "train.epochs"),
    ("train batch size negative", lambda c, t: _train("--batch-size=-1"), "train.batch_size"),
    ("train threads 0", lambda c, t: _train("--threads", "0"), "train.threads"),
    ("train image size 33", lambda c, t: _train("--image-size", "33"), "data.image_size"),
    ("train unknown method", lambda c, t: _train("--method", "nope"), "nope"),
    ("train unknown backbone", lambda c, t: _train("--backbone", "nope"), "nope"),
    ("train latent size 0", lambda c, t: _train("--latent-size", "0"), "model.latent_size"),
    ("train class out of range", lambda c, t: _train("--class", "10"), "class_index 10"),
    ("train unreachable address", lambda c, t: _train("--workers", "2", "--address", "127.0.0.1:1"),
     "cannot reach a Ray cluster at --address 127.0.0.1:1"),
    ("train dashboard address", lambda c, t: _train("--workers", "2", "--address", "http://127.0.0.1:8265"),
     "dashboard"),
    ("train address without workers", lambda c, t: _train("--address", "127.0.0.1:1"), "add --workers"),
    ("train sync-bn without workers", lambda c, t: _train("--sync-bn"), "add --workers"),
    ("train device with workers", lambda c, t: _train("--workers", "2", "--device", "cpu"), "--device"),
    ("train cpus per worker nan", lambda c, t: _train("--workers", "1", "--cpus-per-worker", "nan"),
     "finite number"),
    ("train workers not divisible", lambda c, t: _train("--workers", "3"), "not divisible"),
    ("train bad device", lambda c, t: _train("--device", "tpu"), "tpu"),
    ("score hostile pickle", lambda c, t: _score(c, str(c["ok"]), checkpoint=c["evil"]), "not a raygan checkpoint"),
    ("score hostile torch zip", lambda c, t: _score(c, str(c["ok"]), checkpoint=c["evil_zip"]),
     "not a raygan checkpoint"),
    ("score random bytes", lambda c, t: _score(c, str(c["ok"]), checkpoint=c["random"]), "not a raygan checkpoint"),
    ("score empty checkpoint", lambda c, t: _score(c, str(c["ok"]), checkpoint=c["empty"]), "not a raygan checkpoint"),
    ("score list checkpoint", lambda c, t: _score(c, str(c["ok"]), checkpoint=c["list"]), "not a raygan checkpoint"),
    ("score foreign checkpoint", lambda c, t: _score(c, str(c["ok"]), checkpoint=c["other"]),
     "not a raygan checkpoint"),
    ("score missing checkpoint", lambda c, t: _score(c, str(c["ok"]), checkpoint=t / "none.pt"), "does not exist"),
    ("score directory checkpoint", lambda c, t: _score(c, str(c["ok"]), checkpoint=t), "does not exist"),
    ("score missing input", lambda c, t: _score(c, str(t / "none.png")), "does not exist"),
    ("score nan array", lambda c, t: _score(c, str(c["nan"])), "values in"),
    ("score 5-d array", lambda c, t: _score(c, str(c["five_d"])), "shape"),
    ("score object array", lambda c, t: _score(c, str(c["objects"])), "cannot read array"),
    ("score text as array", lambda c, t: _score(c, str(c["text"])), "cannot read array"),
    ("score garbage image", lambda c, t: _score(c, str(c["garbage"])), "cannot read image"),
    ("score empty folder", lambda c, t: _score(c, str(t)), "holds no images"),
    ("score out in missing dir", lambda c, t: _score(c, str(c["ok"]), "--out", str(t / "none" / "s.csv")),
     "does not exist"),
    ("score out is a dir", lambda c, t: _score(c, str(c["ok"]), "--out", str(t)), "is a directory"),
    ("score out is an input", lambda c, t: _score(c, str(c["ok"]), "--out", str(c["ok"])), "is one of the inputs"),
    ("score maps is a file", lambda c, t: _score(c, str(c["ok"]), "--save-maps", str(c["file"])), "is a file"),
    ("score maps under a file", lambda c, t: _score(c, str(c["ok"]), "--save-maps", str(c["file"] / "m")),
     "not a directory"),
    ("export wrong suffix", lambda c, t: ["export", "--checkpoint", str(c["checkpoint"]), "--out", str(t / "m.onnx")],
     ".pt2"),
    ("export out is a dir", lambda c, t: ["export", "--checkpoint", str(c["checkpoint"]), "--out",
                                          str(c["a_dir"])], "is a directory"),
    ("export out in missing dir", lambda c, t: ["export", "--checkpoint", str(c["checkpoint"]), "--out",
                                                str(t / "none" / "m.pt2")], "does not exist"),
    ("export hostile checkpoint", lambda c, t: ["export", "--checkpoint", str(c["evil"]), "--out", str(t / "m.pt2")],
     "not a raygan checkpoint"),
    ("study list unknown flag", lambda c, t: ["study", "list", "--all"], "--all"),
    ("study unknown", lambda c, t: ["study", "run", "nope", "--dry-run"], "nope"),
    ("study unknown profile", lambda c, t: ["study", "run", "bn_ablation", "--profile", "nope", "--dry-run"], "nope"),
    ("study max concurrent 0 dry run", lambda c, t: ["study", "run", "bn_ablation", "--max-concurrent", "0",
                                                     "--dry-run"], "--max-concurrent"),
    ("study cpus per trial nan", lambda c, t: ["study", "run", "bn_ablation", "--cpus-per-trial", "nan",
                                               "--dry-run"], "finite number"),
    ("study gpus per trial negative", lambda c, t: ["study", "run", "bn_ablation", "--gpus-per-trial=-1",
                                                    "--dry-run"], "--gpus-per-trial"),
    ("study max failures negative", lambda c, t: ["study", "run", "bn_ablation", "--max-failures=-1", "--dry-run"],
     "--max-failures"),
    ("study storage is a file", lambda c, t: ["study", "run", "bn_ablation", "--storage", str(c["file"])],
     "is a file"),
    ("study storage under a file", lambda c, t: ["study", "run", "bn_ablation", "--storage", str(c["file"] / "s")],
     "not a directory"),
    ("study resume nothing", lambda c, t: ["study", "run", "bn_ablation", "--resume", "--storage", str(t)],
     "nothing to resume"),
    ("study unreachable address", lambda c, t: ["study", "run", "bn_ablation", "--address", "127.0.0.1:1",
                                                "--storage", str(t)], "cannot reach"),
    ("study bad device profile", lambda c, t: ["study", "run", "bn_ablation", "--dry-run", "--device-profile",
                                               str(c["profile"])], "profile"),
    ("study gpus 0", lambda c, t: ["study", "run", "bn_ablation", "--dry-run", "--gpus", "0"], "--gpus"),
    ("study best missing dir", lambda c, t: ["study", "best", str(t / "none")], "not a study directory"),
    ("study best a file", lambda c, t: ["study", "best", str(c["file"])], "not a study directory"),
    ("study export out is a file", lambda c, t: ["study", "export", str(c["export"]), "--out", str(c["file"])],
     "is a file"),
    ("study export into a foreign folder", lambda c, t: ["study", "export", str(c["export"]), "--out",
                                                         str(c["dir"])], "--force"),
    ("study export not a study", lambda c, t: ["study", "export", str(t), "--out", str(t / "x")],
     "not a study directory"),
    ("report missing dir", lambda c, t: ["report", str(t / "none")], "not a study directory"),
    ("report figures is a file", lambda c, t: ["report", str(c["export"]), "--figures", str(c["file"])], "is a file"),
    ("report unknown format", lambda c, t: ["report", str(c["export"]), "--format", "xml"], "invalid choice"),
]


def _study_cases():
    # the study scripts' front door (python studies/<name>.py), here bn_ablation's
    return [
        ("unknown flag", lambda c, t: ["--bogus"], "--bogus"),
        ("unknown profile", lambda c, t: ["--profile", "nope", "--dry-run"], "nope"),
        ("max concurrent 0 dry run", lambda c, t: ["--max-concurrent", "0", "--dry-run"], "--max-concurrent"),
        ("cpus per trial nan", lambda c, t: ["--cpus-per-trial", "nan", "--dry-run"], "finite number"),
        ("cpus per trial inf", lambda c, t: ["--cpus-per-trial", "inf", "--dry-run"], "finite number"),
        ("cpus per worker 0", lambda c, t: ["--cpus-per-worker", "0", "--dry-run"], "--cpus-per-worker"),
        ("workers per trial negative", lambda c, t: ["--workers-per-trial=-1", "--dry-run"], "--workers-per-trial"),
        ("epochs 0", lambda c, t: ["--epochs", "0", "--dry-run"], "--epochs"),
        ("class out of range", lambda c, t: ["--classes", "99", "--dry-run"], "class 99"),
        ("unknown data set", lambda c, t: ["--datasets", "nope", "--dry-run"], "nope"),
        ("seeds not numbers", lambda c, t: ["--seeds", "a", "--dry-run"], "--seeds"),
        ("storage is a file", lambda c, t: ["--storage", str(c["file"])], "is a file"),
        ("storage under a file", lambda c, t: ["--storage", str(c["file"] / "s")], "not a directory"),
        ("resume nothing", lambda c, t: ["--resume", "--storage", str(t)], "nothing to resume"),
        ("storage holds a foreign folder of the study's name", lambda c, t: ["--storage", str(c["foreign"].parent)],
         "not a raygan study"),
        ("unreachable address", lambda c, t: ["--address", "127.0.0.1:1", "--storage", str(t)], "cannot reach"),
        ("address not host:port", lambda c, t: ["--address", "nowhere", "--storage", str(t)], "--address nowhere"),
        ("device profile missing", lambda c, t: ["--dry-run", "--device-profile", str(t / "none.json")], "none.json"),
        ("keep checkpoints unknown", lambda c, t: ["--keep-checkpoints", "some"], "invalid choice"),
    ]


STUDY_CASES = _study_cases()


def _one_line(result, phrase: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:], result.stdout[-500:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("raygan: error"), lines[0]
    assert phrase in lines[0], (phrase, lines[0])
    assert "weights_only" not in lines[0]


def _ray_up() -> bool:
    import sys

    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def _no_ray_started(before: bool) -> None:
    # (the suite's session Ray may be up already: then nothing can be told from this)
    assert _ray_up() == before, "a refused command started Ray"


@pytest.mark.parametrize("name,argv,phrase", RAYGAN_CASES, ids=[c[0] for c in RAYGAN_CASES])
def test_every_raygan_subcommand_refuses_hostile_input_in_one_line(ctx, tmp_path, name, argv, phrase):
    before = _ray_up()
    result = raygan(*map(str, argv(ctx, tmp_path)))
    _one_line(result, phrase)
    _no_ray_started(before)
    assert not Path("/tmp/raygan-hostile-pickle-ran").exists()


@pytest.mark.parametrize("name,argv,phrase", STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
def test_the_study_scripts_refuse_hostile_input_in_one_line(ctx, tmp_path, name, argv, phrase):
    from raygan.study import load_studies

    before = _ray_up()
    result = study_script(load_studies().get("bn_ablation"), *map(str, argv(ctx, tmp_path)))
    _one_line(result, phrase)
    _no_ray_started(before)


def test_the_walk_covers_every_subcommand():
    """A new subcommand gets hostile cases too: every leaf of the parser appears in the table."""
    from raygan.cli.main import build_parser

    def leaves(parser, prefix=()):
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    yield from leaves(sub, (*prefix, name))
                return
        yield prefix

    walked = {tuple(a for a in argv(_FakeCtx(), Path("/x"))[:2] if not a.startswith("-"))
              for _, argv, _ in RAYGAN_CASES}
    for leaf in leaves(build_parser()):
        assert any(w[:len(leaf)] == leaf for w in walked), f"no hostile case for raygan {' '.join(leaf)}"


class _FakeCtx(dict):
    def __missing__(self, key):
        return Path("/x") / key


# --------------------------------------------------------------------------------------------
# What once lost data or was silently wrong


def _copy_export(tmp_path: Path, source: Path = EXPORT, name: str = "study") -> Path:
    return Path(shutil.copytree(source, tmp_path / name))


def test_skip_damaged_keeps_a_trial_whose_only_intact_copy_is_the_parquet_row(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    study = _copy_export(tmp_path)
    before = pq.read_table(study / "results.parquet").to_pylist()
    curves_before = pq.read_table(study / "curves.parquet").num_rows
    victim = sorted((study / "rows").glob("*.json"))[0]
    victim.write_text(victim.read_text()[:100])  # truncated; an export has no trials/ to record it again
    plain = raygan("report", str(study))
    assert plain.returncode == 2 and victim.name in plain.stderr and "--skip-damaged" in plain.stderr
    result = raygan("report", str(study), "--skip-damaged")
    assert result.returncode == 0, result.stderr
    assert f"kept trial {victim.stem} from results.parquet" in result.stderr
    after = pq.read_table(study / "results.parquet").to_pylist()
    assert sorted(r["trial_key"] for r in after) == sorted(r["trial_key"] for r in before)
    (kept,) = [r for r in after if r["trial_key"] == victim.stem]
    (was,) = [r for r in before if r["trial_key"] == victim.stem]
    assert kept["auroc"] == was["auroc"] and kept["status"] == was["status"]
    assert pq.read_table(study / "curves.parquet").num_rows == curves_before
    assert result.stdout == raygan("report", str(_copy_export(tmp_path, name="clean"))).stdout  # same table


def test_study_export_never_replaces_another_studys_export_without_force(tmp_path):
    source = _copy_export(tmp_path, name="source")
    target = _copy_export(tmp_path, OTHER_EXPORT, name="target")
    rows_before = sorted(p.name for p in (target / "rows").iterdir())
    manifest_before = (target / "study.json").read_text()
    refused = raygan("study", "export", str(source), "--out", str(target))
    assert refused.returncode == 2, refused.stderr
    assert "holds an export of another study (supervision, profile cpu)" in refused.stderr
    assert sorted(p.name for p in (target / "rows").iterdir()) == rows_before
    assert (target / "study.json").read_text() == manifest_before

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    refused = raygan("study", "export", str(source), "--out", str(tmp_path / "notes"))
    assert refused.returncode == 2 and "mine.txt" in refused.stderr
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"

    forced = raygan("study", "export", str(source), "--out", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "--force: replacing an export of another study (supervision, profile cpu)" in forced.stderr
    assert json.loads((target / "study.json").read_text())["study"] == "one_class"
    assert sorted(p.name for p in (target / "rows").iterdir()) == sorted(p.name for p in (source / "rows").iterdir())

    again = raygan("study", "export", str(source), "--out", str(target))  # its own earlier export: updated
    assert again.returncode == 0 and "replacing" not in again.stderr, again.stderr


def test_a_record_of_another_study_is_never_merged(tmp_path):
    study = _copy_export(tmp_path)
    table = raygan("report", str(study)).stdout
    other = json.loads(sorted((OTHER_EXPORT / "rows").glob("*.json"))[0].read_text())
    foreign = {**json.loads(sorted((study / "rows").glob("*.json"))[0].read_text()),
               "study_hash": other["study_hash"], "trial_key": "intruder", "metrics": {"auroc": 0.01}}
    (study / "rows" / "intruder.json").write_text(json.dumps(foreign))
    (study / "results.parquet").unlink()  # written again from rows/
    refused = raygan("report", str(study))
    assert refused.returncode == 2 and "intruder.json is a record of another study" in refused.stderr
    set_aside = raygan("report", str(study), "--skip-damaged")
    assert set_aside.returncode == 0, set_aside.stderr
    assert "intruder.json is a record of another study" in set_aside.stderr
    assert set_aside.stdout == table  # the numbers are the study's own


def test_belongs_to_study_accepts_the_hashes_a_grown_study_had():
    from raygan.store.records import belongs_to_study

    manifest = {"study": "bn_ablation", "study_hash": "new", "earlier_hashes": ["old"]}
    assert belongs_to_study({"study": "bn_ablation", "study_hash": "new"}, manifest)
    assert belongs_to_study({"study": "bn_ablation", "study_hash": "old"}, manifest)
    assert not belongs_to_study({"study": "bn_ablation", "study_hash": "other"}, manifest)
    assert not belongs_to_study({"study": "one_class", "study_hash": "new"}, manifest)


def test_a_hostile_checkpoint_is_refused_and_nothing_in_it_runs(ctx):
    from raygan.core.errors import RayganError
    from raygan.engine.checkpoints import load_checkpoint

    for name in ("evil", "evil_zip", "random", "empty", "list", "other"):
        with pytest.raises(RayganError, match="is not a raygan checkpoint") as caught:
            load_checkpoint(ctx[name])
        assert "weights_only" not in str(caught.value)
    assert not Path("/tmp/raygan-hostile-pickle-ran").exists()


# --------------------------------------------------------------------------------------------
# The boundary for what nobody expected


def test_an_unexpected_error_is_one_line_naming_the_log_with_the_traceback(tmp_path, monkeypatch):
    import raygan.cli.main as cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_cmd_models", broken)
    result = raygan("models")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 70 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "internal error (ZeroDivisionError: a bug)" in lines[0]
    log = Path(lines[0].split("the full traceback is in ")[1].split(". Please")[0])
    assert "Traceback" in log.read_text() and "ZeroDivisionError: a bug" in log.read_text()
    log.unlink()

    # with a study directory, the log goes there
    study = _copy_export(tmp_path)
    import raygan.analysis.report as report

    monkeypatch.setattr(report, "report", lambda *a, **k: 1 / 0)
    result = raygan("report", str(study))
    assert result.returncode == 70 and f"the full traceback is in {study / 'raygan-error.log'}" in result.stderr
    assert "ZeroDivisionError" in (study / "raygan-error.log").read_text()


def test_a_read_only_storage_or_out_is_refused_before_anything_starts(tmp_path):
    """On a read-only file system (permission bits do not stop root, a read-only mount does)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({done.stderr.decode().strip()[:80]})")
    try:
        from raygan.study import load_studies

        before = _ray_up()
        result = study_script(load_studies().get("bn_ablation"), "--storage", str(mount))
        _one_line(result, "cannot write in")
        _no_ray_started(before)
        _one_line(raygan(*_train("--out", str(mount / "run"))), "cannot write in")
        _one_line(raygan("study", "export", str(EXPORT), "--out", str(mount / "x")), "cannot write in")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_every_float_config_field_refuses_nan_and_infinity_by_name():
    """Generic over the whole config tree, so a field added later is covered without a test of its own."""
    import dataclasses
    import typing

    from raygan.core.errors import ConfigError

    def float_fields(section, prefix=()):
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                yield from float_fields(kind, (*prefix, f.name))
            elif kind is float or float in typing.get_args(kind):
                yield (*prefix, f.name)

    fields = list(float_fields(RunConfig))
    assert len(fields) >= 15
    for path in fields:
        for bad in (float("nan"), float("inf"), float("-inf")):
            values: dict = {}
            node = values
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = bad
            with pytest.raises(ConfigError, match=rf"{'.'.join(path)} must be a finite number"):
                RunConfig.from_dict(values)


def test_sigterm_stops_raygan_train_as_ctrl_c_does_keeping_the_checkpoint(tmp_path):
    """A real process (signals go to processes): exit 143, one line, the last checkpoint loads."""
    import signal
    import sys
    import time

    from raygan.engine.checkpoints import load_checkpoint

    out = tmp_path / "run"
    train = subprocess.Popen([sys.executable, "-m", "raygan", "train", *CHEAP[:-3], "50", "--batch-size", "32",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.pt").exists():
        assert train.poll() is None, train.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    train.send_signal(signal.SIGTERM)
    _, err = train.communicate(timeout=120)
    assert train.returncode == 143, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"raygan: interrupted; {out} keeps the last checkpoint: the same command continues from it"), err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] >= 0


def test_a_closed_pipe_is_not_an_error(monkeypatch):
    """`raygan report DIR | head`: the reader leaves early; no line, no log, the SIGPIPE status."""
    import raygan.cli.main as cli

    def reader_gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_models", reader_gone)
    result = raygan("models")
    assert result.returncode == 141 and result.stderr == "", result.stderr
