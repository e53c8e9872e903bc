"""A study as an operator sees it, run for real on the session's local Ray: what finished trials
keep on disk (--keep-checkpoints), the resume summary after a kill -9 of the driver, progress lines,
and what a DDP study leaves alive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def tiny_plan(name: str = "keep_probe", epochs: int = 2, lrs=(0.001,)):
    """Autoencoder trials on digits, one per learning rate: seconds each."""
    from raygan.study import Factor, Profile, Study, expand, study_hash
    from raygan.tune.plan import Plan

    study = Study(
        name=name, reproduces="test", caption="",
        base={"method": "autoencoder", "model": {"backbone": "naive", "latent_size": 8}},
        factors=(Factor("lr", tuple(lrs), key="train.lr"),),
        profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (0,)}, seeds=(0,), epochs=epochs,
                                   overrides={"train": {"batch_size": 32}})},
    )
    trials = expand(study, study.profile("smoke"))
    return Plan(study, "smoke", study_hash(study, "smoke", trials, None), trials=tuple(trials), epochs=epochs)


@pytest.mark.parametrize("keep,kept", [("selected", {"selected.pt"}), ("none", set())])
def test_a_finished_trial_keeps_what_keep_checkpoints_says(ray_cluster, tmp_path, capsys, keep, kept):
    from raygan.analysis.report import best_trial
    from raygan.analysis.parquet import write_results
    from raygan.tune.driver import run_plan
    from raygan.tune.plan import RunOptions

    study_dir = run_plan(tiny_plan(), RunOptions(storage=tmp_path, keep_checkpoints=keep))
    write_results(study_dir)
    (record,) = [json.loads(p.read_text()) for p in (study_dir / "rows").glob("*.json")]
    assert record["status"] == "finished" and len(record["history"]) == 2
    run_dir = study_dir / "trials" / record["trial_key"]
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == kept
    assert (run_dir / "test_scores.npz").exists() and (run_dir / "metrics.json").exists()  # box plots, tables
    best = best_trial(study_dir)
    assert best["checkpoint"] == (str(run_dir / "checkpoints" / "selected.pt") if kept else None)
    if not kept:  # the figures that need no detector are drawn; the reconstructions say why they are not
        from raygan.cli.main import main

        assert main(["report", str(study_dir), "--figures", str(tmp_path / "figures")]) == 0
        err = capsys.readouterr().err
        assert "raygan: no reconstructions_digits_c0.png: its trials have no checkpoints/selected.pt here" in err
        assert (tmp_path / "figures" / "auroc_per_epoch_digits.png").exists()


def _records(study_dir: Path) -> dict[str, dict]:
    out = {}
    for p in (study_dir / "rows").glob("*.json"):
        try:
            out[p.stem] = json.loads(p.read_text())
        except json.JSONDecodeError:
            out[p.stem] = None
    return out


def test_an_interrupted_study_resumes_with_an_honest_summary_and_counter(ray_cluster, tmp_path):
    """Ctrl-C (SIGINT) of the driver once one trial finished and the next has a checkpoint: Tune
    ends the running trial early, which is not recorded (it would read as an ASHA stop) and the
    driver exits 130 saying how to resume; --resume says what it found, counts on from there,
    prints no Tune warnings about missing result files, records again a finished trial whose record
    was damaged meanwhile without training it again, continues the interrupted one from its
    checkpoint, and ends with every trial exactly once. (kill -9 of a driver: test_cluster.py.)"""
    import re
    import signal
    import time

    from test_study_runs import study

    args = ["studies/supervision.py", "--profile", "smoke", "--epochs", "3", "--max-concurrent", "1",
            "--storage", str(tmp_path)]
    study_dir = tmp_path / "supervision"
    first = study(sys.executable, *args, cluster=ray_cluster)
    deadline = time.time() + 400

    def interrupted() -> list[str]:
        done = _records(study_dir)
        return [d.name for d in (study_dir / "trials").glob("*")
                if d.name not in done and (d / "checkpoints" / "last.pt").exists()] if done else []

    while not interrupted():
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() < deadline, "no trial finished and none checkpointed in time"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 130, err[-3000:]
    assert f"raygan: interrupted; continue with the same command plus --resume ({study_dir})" in err, err[-3000:]
    assert all(r["status"] == "finished" for r in _records(study_dir).values())  # nothing recorded as stopped
    before = _records(study_dir)
    # Tune's graceful stop may let the interrupted trial finish its last epoch: then it is recorded
    # finished, and only the third trial is left
    assert len(before) in (1, 2), before
    done_key = min(before, key=lambda k: before[k]["recorded_at"])
    assert {p.name for p in (study_dir / "trials" / done_key / "checkpoints").iterdir()} == {"selected.pt"}
    done_mtime = (study_dir / "trials" / done_key / "metrics.json").stat().st_mtime
    record_file = study_dir / "rows" / f"{done_key}.json"
    before_history = before[done_key]["history"]
    record_file.write_text(record_file.read_text()[:50])  # damaged meanwhile

    second = study(sys.executable, *args, "--resume", cluster=ray_cluster)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-4000:]
    # The interrupted trial's process may also finish it before Ray ends it, unrecorded: then it is
    # found finished (all epochs done) rather than continuing.
    summary = re.search(r"resuming study supervision, profile smoke, 3 trials: (1 finished \(kept, not trained again\), "
                        r"1 continues from a checkpoint \(epochs done: [12]/3\)|2 finished \(kept, not trained again\), "
                        r"0 continue from a checkpoint), 1 starts fresh", err)
    assert summary, err
    counted = {f"[{i}/3]" for i in range(len(before) + 1, 4)}  # counts on from the recorded ones
    assert set(re.findall(r"^\[\d/3\]", err, re.M)) == counted, err
    assert "Failed to fetch metrics" not in err and "Traceback" not in err, err
    assert json.loads(out.strip().splitlines()[-1])["finished"] == 3
    after = _records(study_dir)
    assert after[done_key] is not None and after[done_key]["status"] == "finished"  # recorded again
    assert after[done_key]["history"] == before_history  # not trained again
    assert (study_dir / "trials" / done_key / "metrics.json").stat().st_mtime == done_mtime
    import pyarrow.parquet as pq

    rows = pq.read_table(study_dir / "results.parquet").to_pylist()
    assert sorted(r["trial_key"] for r in rows) == sorted(after)  # every trial exactly once
    for key, record in after.items():  # every epoch trained once: the interrupted one continued
        assert [h["epoch"] for h in record["history"]] == [0, 1, 2], key
        assert {p.name for p in (study_dir / "trials" / key / "checkpoints").iterdir()} == {"selected.pt"}


def test_a_local_ray_started_by_a_killed_driver_leaves_no_process(tmp_path):
    """The driver starts its own Ray (no --address); after its kill -9 every process of that Ray
    is gone within seconds (raygan.raytrain.reaper). Only this driver's descendants are looked at."""
    import os
    import signal
    import subprocess
    import time

    import ray  # noqa: F401  (puts Ray's bundled psutil on the path)
    import psutil

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-m", "raygan", "study", "run", "supervision", "--profile", "smoke",
                               "--epochs", "1", "--storage", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen: dict[int, float] = {}  # pid -> create time: a reused PID is never mistaken for ours
    try:
        deadline = time.time() + 400
        while not list((tmp_path / "supervision" / "trials").glob("*/attempts.jsonl")):
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.time() < deadline, "no trial started in time"
            seen.update({p.pid: p.create_time() for p in psutil.Process(driver.pid).children(recursive=True)})
            time.sleep(0.5)
        time.sleep(1)
        tree = psutil.Process(driver.pid).children(recursive=True)
        seen.update({p.pid: p.create_time() for p in tree})
        names = {p.name() for p in tree}
        assert "raylet" in names and {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
        driver.send_signal(signal.SIGKILL)
        driver.wait()

        def alive() -> dict[int, str]:
            out = {}
            for pid, created in seen.items():
                try:
                    p = psutil.Process(pid)
                    if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                        out[pid] = p.name()
                except psutil.NoSuchProcess:
                    pass
            return out

        deadline = time.time() + 30
        while alive() and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(), f"left alive 30 s after the driver's kill -9: {alive()}"
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid, created in seen.items():  # never leave this test's processes behind, pass or fail
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    p.kill()
            except psutil.NoSuchProcess:
                pass


def test_ddp_trials_fail_in_kind_and_leave_no_actor_behind(ray_cluster, tmp_path):
    """A study of two DDP trials (--workers-per-trial 2, --max-failures 1): the one at lr 1e30,
    whose loss is NaN at step 1 inside the workers, keeps its error's kind (NonFiniteLoss) through
    Ray Train, so the study records it failed once instead of retrying it; the other finishes.
    Afterwards no per-trial actor is alive: no Ray Train controller, worker or detached
    PlacementGroupCleaner (ray-project/ray#65443: measured, Ray 2.60 stops each run's cleaner), and
    no placement group is left; the finished trial's Ray Train checkpoint copies are deleted."""
    from collections import Counter

    from ray.util.state import list_actors, list_placement_groups

    import argparse

    from raygan.cli.study import add_study_arguments, options_from
    from raygan.store.trial_files import read_attempts
    from raygan.tune.driver import run_plan

    def alive() -> Counter:
        actors = list_actors(address=ray_cluster, filters=[("state", "=", "ALIVE")], limit=1000)
        return Counter(a.class_name for a in actors)

    before = alive()
    plan = tiny_plan("ddp_probe", epochs=1, lrs=(0.001, 1e30))
    # the study scripts' own flags make the options (what `--workers-per-trial 2` runs)
    parser = argparse.ArgumentParser()
    add_study_arguments(parser)
    options = options_from(parser.parse_args(["--workers-per-trial", "2", "--cpus-per-worker", "0.9",
                                              "--max-concurrent", "1", "--max-failures", "1",
                                              "--storage", str(tmp_path)]))
    assert options.workers_per_trial == 2 and options.cpus_per_worker == 0.9
    study_dir = run_plan(plan, options)
    records = {r["config"]["train"]["lr"]: r for r in
               (json.loads(p.read_text()) for p in (study_dir / "rows").glob("*.json"))}
    assert {lr: r["status"] for lr, r in records.items()} == {0.001: "finished", 1e30: "failed"}
    assert records[0.001]["metrics"]["epochs"] == 1 and 0 <= records[0.001]["metrics"]["auroc"] <= 1
    error = records[1e30]["error"]
    assert error.startswith("distributed training failed:") and "became nan" in error, error
    for r in records.values():  # one attempt each: the NaN run was not retried
        assert len(read_attempts(study_dir / "trials" / r["trial_key"])) == 1, r["trial_key"]
    # Ray Train's cluster-wide AutoscalingCoordinator (a named, detached singleton that every Train
    # run reuses) may stay; nothing may stay per trial.
    left = alive() - before - Counter({"_AutoscalingCoordinatorActor": 1})
    assert not left, f"actors alive after the study: {dict(left)}"
    pgs = [pg for pg in list_placement_groups(address=ray_cluster, limit=1000) if pg.state != "REMOVED"]
    assert not pgs, pgs
    run_dir = study_dir / "trials" / records[0.001]["trial_key"]
    assert (run_dir / "ray").is_dir() and not list((run_dir / "ray").glob("*/checkpoint_*"))
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"selected.pt"}


def test_tunes_missing_results_warning_is_what_the_filter_silences(ray_cluster, tmp_path, caplog):
    """Where the resume's "Failed to fetch metrics ... result.json and progress.csv were not found"
    comes from: Tune's ExperimentAnalysis over a trial that has a result in the experiment state but
    no result files (as after a kill -9). The filter drops exactly that warning."""
    import logging

    from ray.tune import ExperimentAnalysis

    from raygan.tune.driver import quiet_missing_trial_results, run_plan
    from raygan.tune.plan import RunOptions

    study_dir = run_plan(tiny_plan("warn_probe", epochs=1), RunOptions(storage=tmp_path))
    for name in ("result.json", "progress.csv"):
        for path in (study_dir / "tune").glob(f"*/{name}"):
            path.unlink()
    # caplog's handler on the logger itself: whether "ray" propagates to the root depends on how an
    # earlier test in the session left Ray's logging configured
    logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    caplog.set_level(logging.WARNING, logger=logger.name)
    logger.addHandler(caplog.handler)
    disabled, logger.disabled = logger.disabled, False  # a dictConfig earlier in the session may disable it
    try:
        ExperimentAnalysis(str(study_dir / "tune"))
        assert "Failed to fetch metrics for 1 trial(s)" in caplog.text and "were not found" in caplog.text
        caplog.clear()
        with quiet_missing_trial_results():
            ExperimentAnalysis(str(study_dir / "tune"))
        assert "Failed to fetch metrics" not in caplog.text
    finally:
        logger.removeHandler(caplog.handler)
        logger.disabled = disabled


def test_sigterm_ends_a_study_as_ctrl_c_does(ray_cluster, tmp_path):
    """SIGTERM (a scheduler's stop, `kill`, `timeout`) once one trial is recorded: the driver ends as
    on Ctrl-C, exit 143 (128 + SIGTERM), the one line saying how to resume, nothing recorded as
    stopped, no native crash dump from Ray's own handler, no Tune advice of its own."""
    import signal

    from test_study_runs import study, wait_for_records

    study_dir = tmp_path / "supervision"
    first = study(sys.executable, "studies/supervision.py", "--profile", "smoke", "--epochs", "2",
                  "--max-concurrent", "1", "--storage", str(tmp_path), cluster=ray_cluster)
    wait_for_records(first, study_dir, 1)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 143, err[-3000:]
    assert f"raygan: interrupted; continue with the same command plus --resume ({study_dir})" in err, err[-3000:]
    for noise in ("Traceback", "SIGTERM received", "Tuner.restore", "Stop signal received"):
        assert noise not in err, err[-3000:]
    assert all(r["status"] == "finished" for r in _records(study_dir).values())  # nothing recorded as stopped


def test_a_full_disk_stops_a_study_in_one_line_and_resume_finishes_it(ray_cluster, tmp_path):
    """The study's storage (a 200 MB tmpfs) fills up while its second trial trains: the driver stops
    the study with one line naming the path, its free space and --resume, exit 2, no traceback;
    the records written before are intact and the trial the disk stopped is not recorded failed.
    With space freed, --resume finishes every trial (Tune's state, cut short by the full disk, is
    set aside)."""
    import subprocess

    from test_study_runs import finish, study, wait_for_records

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:80]})")
    try:
        args = [sys.executable, "studies/supervision.py", "--profile", "smoke", "--epochs", "2", "--max-concurrent",
                "1", "--keep-checkpoints", "none", "--storage", str(disk)]
        study_dir = disk / "supervision"
        first = study(*args, cluster=ray_cluster)
        wait_for_records(first, study_dir, 1)
        with open(disk / "filler", "wb") as filler:  # what else on the machine filled the disk
            try:
                while True:
                    filler.write(b"\0" * 2**20)
                    filler.flush()
            except OSError:
                pass
        _, err = first.communicate(timeout=300)
        assert first.returncode == 2, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert f"{study_dir}: no space left on the device (" in last and "plus --resume" in last, last
        recorded = _records(study_dir)  # every record parses: none was cut short
        assert recorded and all(r["status"] == "finished" for r in recorded.values()), recorded

        (disk / "filler").unlink()
        _, summary = finish(study(*args, "--resume", cluster=ray_cluster))
        assert summary["finished"] == 3 and summary["failed"] == 0
        after = _records(study_dir)
        assert all(after[k]["history"] == r["history"] for k, r in recorded.items())  # not trained again
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
