"""Studies run for real on the session's local Ray: the bn_ablation smoke study end to end, the
Optuna/ASHA search and its resume after a kill, figures, export and resume from an export (a
grid study's resume after Ctrl-C and DDP trials: test_study_operator.py; a failing trial recorded
once, not retried: test_cluster.py).

Drivers are subprocesses that join the session's Ray with --address (as a user would run a study
against a running cluster), so killing one never leaves Ray processes of its own behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from inprocess import raygan, study_script

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[1]
SMOKE_TRIALS = 6  # bn_ablation smoke: digits class 3, γ ∈ {0, .1}, AdvProp × Freeze (Freeze only at γ > 0)
pytestmark = pytest.mark.slow


def study(*args: str, cluster: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    return subprocess.Popen([*args, "--address", cluster], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[str, dict]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-4000:]
    return out, json.loads(out.strip().splitlines()[-1])


def records(study_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (study_dir / "rows").glob("*.json")}


def wait_for_records(driver: subprocess.Popen, study_dir: Path, count: int, timeout: float = 400) -> None:
    """Until ``count`` trials have records (the driver still running), e.g. to kill it then."""
    deadline = time.time() + timeout
    while len(records(study_dir)) < count:
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.5)


def test_bn_ablation_smoke_end_to_end_with_figures_export_and_resume(ray_cluster, tmp_path):
    out, summary = finish(study(sys.executable, "studies/bn_ablation.py", "--profile", "smoke", "--epochs", "3",
                                "--storage", str(tmp_path), cluster=ray_cluster))
    study_dir = tmp_path / "bn_ablation"
    assert summary["trials"] == SMOKE_TRIALS and summary["finished"] == SMOKE_TRIALS and summary["failed"] == 0

    rows = pq.read_table(study_dir / "results.parquet").to_pylist()
    assert len(rows) == SMOKE_TRIALS and len({r["trial_key"] for r in rows}) == SMOKE_TRIALS
    for r in rows:
        assert r["study"] == "bn_ablation" and r["status"] == "finished" and r["error"] is None
        assert r["model.bn_strategy"] == {(False, False): "shared", (True, False): "advprop", (False, True): "freeze",
                                          (True, True): "advprop+freeze"}[r["factor.advprop"], r["factor.freeze"]]
        assert r["data.anomaly_fraction"] == r["factor.gamma"] and r["seed"] == 0 and r["epochs"] == 3
        assert 0.0 <= r["auroc"] <= 1.0 and 0.0 <= r["auroc_val"] <= 1.0 and r["images_per_s"] > 0
        assert r["torch_version"] and r["ray_version"] and r["raygan_version"] and r["node_id"]
    # the study is a real ablation: the four BN strategies do not all give the same detector
    assert len({round(r["auroc"], 6) for r in rows if r["factor.gamma"] > 0}) > 1
    curves = pq.read_table(study_dir / "curves.parquet").to_pylist()
    assert sorted((c["trial_key"], c["epoch"]) for c in curves) == sorted(
        (r["trial_key"], e) for r in rows for e in range(3))

    # the report: paper layout, one row per (AdvProp, Freeze, γ) cell; the same table from the CLI
    assert "| dataset | advprop | freeze | gamma | class 3 | avg | SD | paper | Δ |" in out
    table = raygan("report", str(study_dir))
    assert table.returncode == 0 and table.stdout.count("\n| digits |") == SMOKE_TRIALS  # the grid rows (a comparison row starts with its name)
    assert f"{SMOKE_TRIALS} trials finished, 0 failed" in table.stdout

    # TensorBoard: each trial's scalars, images, histograms and an HParams entry of the factors
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for r in rows:
        events = EventAccumulator(str(study_dir / "trials" / r["trial_key"] / "tensorboard"), size_guidance={"images": 0})
        events.Reload()
        tags = events.Tags()
        assert [e.step for e in events.Scalars("epoch/auroc_val")] == [0, 1, 2]
        assert "reconstructions/test_normal" in tags["images"] and "scores/test_anomalous" in tags["histograms"]
        hparams = events.PluginTagToContent("hparams")
        assert hparams and any(b"advprop" in content for content in hparams.values())

    scores_and_figures_are_those_of_the_selected_epoch(study_dir, tmp_path)
    export_then_resume_from_it_after_a_config_field_was_added(ray_cluster, study_dir, tmp_path)
    a_grown_grid_keeps_its_records_and_trains_only_its_new_trials(ray_cluster, study_dir)


def test_a_search_interrupted_killed_and_resumed_keeps_one_optuna_study_and_reports_it(ray_cluster, tmp_path):
    """The hpo smoke search (Optuna TPE + ASHA): Ctrl-C after its first trial (the driver says the
    search did not end and exits 130; the trial it interrupted is not recorded), --resume killed
    (kill -9) after its second, and resumed again: the same Optuna study (in the study directory's
    SQLite file) holds every Tune trial exactly once with its results row's value; so does the
    killed search's export resumed elsewhere (no Tune state: the samples not recorded run in the
    same Optuna study); then the search's report, best configuration and best trial."""
    args = [sys.executable, "studies/hpo.py", "--profile", "smoke", "--storage", str(tmp_path)]
    study_dir = tmp_path / "hpo"
    first = study(*args, cluster=ray_cluster)
    wait_for_records(first, study_dir, 1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 130, err[-3000:]
    assert f"raygan: interrupted; continue with the same command plus --resume ({study_dir})" in err, err[-3000:]
    interrupted = records(study_dir)
    assert len(interrupted) < 4 and all(r["status"] == "finished" for r in interrupted.values()), interrupted

    killed = study(*args, "--resume", cluster=ray_cluster)
    wait_for_records(killed, study_dir, len(interrupted) + 1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert len(records(study_dir)) < 4, "the search finished before the kill; nothing to resume"
    exported = tmp_path / "exported"  # the killed search's export: records and optuna.db, no Tune state
    done = raygan("study", "export", str(study_dir), "--out", str(exported))
    assert done.returncode == 0, done.stderr

    # Resumed in place (from its Tune state) and, at the same time on the same Ray, from the
    # export's copy (a search moved to another machine: no Tune state, so it runs only the samples
    # not recorded, in the same Optuna study, and fails the trial the killed driver left running).
    shutil.copytree(exported, tmp_path / "moved" / "hpo")
    resumed = study(*args, "--resume", cluster=ray_cluster)
    moved = study(sys.executable, "studies/hpo.py", "--profile", "smoke", "--storage", str(tmp_path / "moved"),
                  "--resume", cluster=ray_cluster)
    with ThreadPoolExecutor(1) as pool:  # read both drivers' pipes at once: neither may block on a full one
        moved_output = pool.submit(moved.communicate, timeout=600)
        out, summary = finish(resumed)
        moved_out, moved_err = moved_output.result()
    assert moved.returncode == 0, moved_err[-4000:]
    every_tune_trial_once_in_optuna(tmp_path / "moved" / "hpo", json.loads(moved_out.strip().splitlines()[-1]))
    assert "has no Tune experiment (a copy of an export): the search continues in its Optuna study" in moved_err

    rows = every_tune_trial_once_in_optuna(study_dir, summary)
    for r in rows:
        # the sampled values are the trial's config
        assert r["model.latent_size"] == r["factor.model.latent_size"] and r["model.backbone"] == "naive"
        assert r["loss.adversarial_weight"] == pytest.approx(r["factor.loss.adversarial_weight"])
        assert (r["loss.contextual_adversarial_weight"] == 0.0) == (not r["factor.contextual_adversarial"])
        assert r["epochs"] == (2 if r["status"] == "finished" else 1)

    assert "ranked by validation AUROC" in out
    assert "optimisation history (Optuna study raygan-hpo-" in out and "parameter importances" in out
    config_file = study_dir / "best_config.json"
    assert f"raygan train --config {config_file}" in out
    from raygan.core.config import RunConfig

    assert RunConfig.from_dict(json.loads(config_file.read_text())).model.backbone == "naive"
    best = raygan("study", "best", str(study_dir))
    assert best.returncode == 0, best.stderr
    chosen = json.loads(best.stdout)
    assert chosen["auroc_val"] == max(r["auroc_val"] for r in rows)
    import torch

    payload = torch.load(chosen["checkpoint"], weights_only=True)
    assert payload["config"] == chosen["config"]


def every_tune_trial_once_in_optuna(study_dir: Path, summary: dict) -> list[dict]:
    """The resumed smoke search ended with its 4 samples, and its Optuna study holds every Tune trial
    exactly once with its results row's value (the validation AUROC); trials Optuna had handed out
    that will never report are failed and marked, never left running. Returns the results rows."""
    import optuna

    assert summary["trials"] == 4 and summary["failed"] == 0 and summary["finished"] + summary["stopped"] == 4
    rows = pq.read_table(study_dir / "results.parquet").to_pylist()
    assert len(rows) == 4 and len({r["trial_key"] for r in rows}) == 4
    manifest = json.loads((study_dir / "study.json").read_text())
    (name,) = optuna.get_all_study_names(f"sqlite:///{study_dir / 'optuna.db'}")
    assert name == f"raygan-hpo-{manifest['study_hash']}"  # resumed into the same Optuna study
    ot_trials = optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'optuna.db'}").trials
    told = [t for t in ot_trials if t.state != optuna.trial.TrialState.FAIL]
    assert sorted(t.user_attrs["tune_trial_id"] for t in told) == sorted(r["trial_id"] for r in rows)
    for t in told:
        (row,) = [r for r in rows if r["trial_id"] == t.user_attrs["tune_trial_id"]]
        assert t.value == pytest.approx(row["auroc_val"])
    for t in ot_trials:
        assert t.state != optuna.trial.TrialState.RUNNING
        if t.state == optuna.trial.TrialState.FAIL:
            assert "raygan_orphaned" in t.user_attrs
    return rows


def test_optuna_storage_that_is_bad_or_holds_another_run_is_refused_before_any_trial(tmp_path):
    import optuna

    from raygan.study import load_studies

    def run(*extra: str) -> subprocess.CompletedProcess:
        """studies/hpo.py's entry point in-process: the refusals come before Ray is joined."""
        return study_script(load_studies().get("hpo"), "--profile", "smoke", "--storage", str(tmp_path), *extra)

    for url in ("not a url", "postgresql://raygan:secret@127.0.0.1:9/optuna"):
        result = run("--optuna-storage", url)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        shown = url.replace(":secret@", ":***@")
        assert result.stderr.startswith("raygan: error in python studies/hpo.py"), result.stderr
        assert f": --optuna-storage {shown}: cannot open it as an Optuna storage" in result.stderr
        assert "secret" not in result.stderr and not (tmp_path / "hpo").exists()
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="raygan-hpo-0123456789abcdef", storage=db)
    result = run("--optuna-storage", db)
    assert result.returncode == 2, result.stderr
    assert "already holds Optuna study raygan-hpo-0123456789abcdef, another run of search hpo" in result.stderr
    assert not (tmp_path / "hpo").exists()


def scores_and_figures_are_those_of_the_selected_epoch(study_dir: Path, tmp_path: Path) -> None:
    """The per-image test scores the box plots use, and the reconstruction figure's images, come
    from each trial's validation-selected epoch; `raygan report --figures` draws every figure with
    data in it. ``study_dir``: a finished digits class-3 study with a γ factor."""
    import numpy as np
    from PIL import Image

    from raygan.engine.evaluation import detection_metrics

    for key, record in records(study_dir).items():
        # the per-image test scores the box plots use are those of the validation-selected epoch
        saved = np.load(study_dir / "trials" / key / "test_scores.npz")
        assert int(saved["epoch"]) == record["metrics"]["selected_epoch"]
        assert set(np.unique(saved["targets"])) == {0, 1} and len(saved["scores"]) == len(saved["classes"])
        recomputed = detection_metrics(saved["scores"], saved["targets"].astype(np.int64))
        assert recomputed["auroc"] == pytest.approx(record["metrics"]["auroc"], abs=1e-6)
        # the reconstruction figure's images come from the selected checkpoint: their ‖x − G(x)‖₂
        # are the saved scores of those test images
        from raygan.analysis.figures import Reconstructor

        run_dir = study_dir / "trials" / key
        x, x_hat, targets = Reconstructor().images({"config": json.loads((run_dir / "config.json").read_text()),
                                                    "checkpoint": run_dir / "checkpoints" / "selected.pt"})
        assert len(x) == 16 and list(targets) == [0] * 8 + [1] * 8
        for distance in np.sqrt(((x - x_hat) ** 2).reshape(len(x), -1).sum(1)):
            assert np.isclose(saved["scores"], distance, rtol=1e-5).any()

    figures = tmp_path / "figures"
    result = raygan("report", str(study_dir), "--figures", str(figures))
    assert result.returncode == 0, result.stderr
    expected = {"auroc_per_epoch_digits.png", "reconstructions_digits_c3.png", "gamma_vs_auroc.png",
                *(f"score_boxes_digits_advprop_{a}_freeze_{f}.png" for a in ("no", "yes") for f in ("no", "yes"))}
    assert {p.name for p in figures.iterdir()} == expected
    assert sorted(line.removeprefix("figure: ") for line in result.stderr.splitlines() if line.startswith("figure: ")) \
        == sorted(str(figures / name) for name in expected)
    for name in expected:
        with Image.open(figures / name) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300
            low, high = image.convert("L").getextrema()
            assert high - low > 100, f"{name} is blank"
            if name != "reconstructions_digits_c3.png":  # plots: data are drawn in colour, text and axes in grey
                rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
                coloured = int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())
                # measured 1.6k-22k here; a legend without data draws about 400
                assert coloured > 1000, f"{name}: no lines or boxes drawn ({coloured} coloured pixels)"


def test_report_scores_every_method_by_one_score_and_keeps_it_without_checkpoints(ray_cluster, tmp_path):
    import shutil

    _, summary = finish(study(sys.executable, "studies/one_class.py", "--profile", "smoke", "--epochs", "1",
                              "--storage", str(tmp_path), cluster=ray_cluster))
    study_dir = tmp_path / "one_class"
    assert summary["finished"] == 4 and summary["failed"] == 0

    def same_score_table() -> tuple[str, dict]:
        result = raygan("report", str(study_dir), "--same-score")
        assert result.returncode == 0, result.stderr
        return result.stdout, json.loads((study_dir / "same_score.json").read_text())

    text, scores = same_score_table()
    assert "‖x − G(x)‖₂" in text and set(scores) == set(records(study_dir))
    for key, record in records(study_dir).items():
        if record["factors"]["method"] in ("agad", "autoencoder"):  # their own score is ‖x − G(x)‖₂
            assert scores[key] == pytest.approx(record["metrics"]["auroc"], abs=1e-6), key
        else:
            assert 0.0 <= scores[key] <= 1.0
    # a folder without checkpoints (as committed under results/) still reports the same table
    for key in scores:
        shutil.rmtree(study_dir / "trials" / key / "checkpoints")
    assert same_score_table() == (text, scores)


def export_then_resume_from_it_after_a_config_field_was_added(ray_cluster: str, study_dir: Path, tmp_path: Path):
    """`raygan study export` writes what results/<study>-<profile>/ commits (no checkpoints, no Tune
    state); a copy of it, written before a config field existed, continues with --resume and trains
    only the trials it lacks. ``study_dir``: the finished bn_ablation smoke study of 3 epochs."""
    def script(storage: Path) -> list[str]:
        return [sys.executable, "studies/bn_ablation.py", "--profile", "smoke", "--epochs", "3", "--storage", str(storage)]

    exported = tmp_path / "bn_ablation-smoke"
    result = raygan("study", "export", str(study_dir), "--out", str(exported))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in exported.iterdir()}
    assert {"study.json", "rows", "results.parquet", "curves.parquet", "report.md", "figures", "PROVENANCE.md"} <= names
    assert not {"trials", "tune"} & names and not list(exported.rglob("*.pt"))
    assert "| dataset | advprop | freeze | gamma | class 3 |" in (exported / "report.md").read_text()
    provenance = (exported / "PROVENANCE.md").read_text()
    assert f"{SMOKE_TRIALS} finished" in provenance and "wall time:" in provenance and "over 1 driver run(s)" in provenance
    report = raygan("report", str(exported))
    assert report.returncode == 0 and report.stdout == (exported / "report.md").read_text(), report.stderr

    study_dir = tmp_path / "second" / "bn_ablation"
    shutil.copytree(exported, study_dir)
    before = records(study_dir)
    missing = sorted(before)[0]
    (study_dir / "rows" / f"{missing}.json").unlink()
    del before[missing]
    # as written by a version without train.deterministic (its default, True, trains the same)
    manifest = json.loads((study_dir / "study.json").read_text())
    for t in manifest["trial_list"]:
        del t["config"]["train"]["deterministic"]
    manifest["study_hash"] = "0ld0ld0ld0ld0ld0"  # that version's hash of those configs
    (study_dir / "study.json").write_text(json.dumps(manifest))
    for key, record in before.items():
        (study_dir / "rows" / f"{key}.json").write_text(json.dumps({**record, "study_hash": manifest["study_hash"]}))
    before = records(study_dir)

    _, summary = finish(study(*script(tmp_path / "second"), "--resume", cluster=ray_cluster))
    after = records(study_dir)
    assert summary["finished"] == SMOKE_TRIALS and sorted(after) == sorted([*before, missing])
    for key in before:  # kept, not trained again
        assert after[key]["recorded_at"] == before[key]["recorded_at"]
        assert not (study_dir / "trials" / key / "metrics.json").exists()
    assert [h["epoch"] for h in after[missing]["history"]] == [0, 1, 2]
    assert {r["study_hash"] for r in pq.read_table(study_dir / "results.parquet").to_pylist()} == {"0ld0ld0ld0ld0ld0"}

    # a changed value is another study: refused
    manifest["trial_list"][0]["config"]["train"]["lr"] = 0.5
    (study_dir / "study.json").write_text(json.dumps(manifest))
    from raygan.study import load_studies

    # refused before joining Ray: the script's entry point in-process
    refused = study_script(load_studies().get("bn_ablation"), *script(tmp_path / "second")[2:], "--resume",
                           "--address", ray_cluster)
    assert refused.returncode == 2 and "holds study bn_ablation profile smoke with other trials" in refused.stderr


def a_grown_grid_keeps_its_records_and_trains_only_its_new_trials(ray_cluster: str, study_dir: Path) -> None:
    """A grid whose profile gained trials (more seeds, say) continues with --resume in its directory:
    the trials it had keep their records and are not trained again, only the new ones run, and the
    smaller grid's Tune experiment (which a restore would run as it was) is set aside.
    ``study_dir``: the finished bn_ablation smoke study of 3 epochs, its Tune experiment in place."""
    manifest = json.loads((study_dir / "study.json").read_text())
    new_keys = [t["key"] for t in manifest["trial_list"][-2:]]  # as if the earlier profile lacked them
    manifest["trial_list"] = manifest["trial_list"][:-2]
    manifest["study_hash"] = small = "sm4llgr1dsm4llgr"
    (study_dir / "study.json").write_text(json.dumps(manifest))
    for key in new_keys:
        (study_dir / "rows" / f"{key}.json").unlink()
        shutil.rmtree(study_dir / "trials" / key)
    for key, record in records(study_dir).items():
        (study_dir / "rows" / f"{key}.json").write_text(json.dumps({**record, "study_hash": small}))
    before = records(study_dir)

    driver = study(sys.executable, "studies/bn_ablation.py", "--profile", "smoke", "--epochs", "3",
                   "--storage", str(study_dir.parent), "--resume", cluster=ray_cluster)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-4000:]
    assert json.loads(out.strip().splitlines()[-1])["finished"] == SMOKE_TRIALS
    assert f"grows from {SMOKE_TRIALS - 2} to {SMOKE_TRIALS} trials" in err
    grown = json.loads((study_dir / "study.json").read_text())
    assert len(grown["trial_list"]) == SMOKE_TRIALS and grown["earlier_hashes"] == [small]
    assert grown["study_hash"] != small and (study_dir / f"tune-{small}").is_dir() and (study_dir / "tune").is_dir()
    after = records(study_dir)
    assert sorted(after) == sorted([*before, *new_keys])
    for key in before:  # kept as recorded, not trained again
        assert after[key] == before[key]
    for key in new_keys:
        assert after[key]["study_hash"] == grown["study_hash"] and after[key]["status"] == "finished"
        assert [h["epoch"] for h in after[key]["history"]] == [0, 1, 2]
    assert len(pq.read_table(study_dir / "results.parquet").to_pylist()) == SMOKE_TRIALS
