"""Damaged study folders and atomic writes (no Ray, no training): `raygan report` names a damaged
file in one line, rebuilds unreadable Parquet files from rows/, skips damaged records on request,
and `--resume` writes a damaged study.json again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inprocess import raygan

from raygan.cli.main import main
from raygan.core.errors import RayganError
from raygan.study import expand, load_studies, narrow_profile

pq = pytest.importorskip("pyarrow.parquet")
STUDIES = load_studies()


def make_study_dir(tmp_path: Path, study_hash: str = "h") -> tuple[Path, list[str]]:
    """A bn_ablation study directory with records as the Tune layer writes them, and its keys."""
    from raygan.analysis.parquet import write_results
    from raygan.store.layout import STUDY_FILE
    from raygan.store.records import write_record

    study = STUDIES.get("bn_ablation")
    profile = narrow_profile(study.profile("smoke"), datasets=["digits"], classes=[3], seeds=[0])
    trials = expand(study, profile)[:3]
    study_dir = tmp_path / "bn_ablation"
    study_dir.mkdir(parents=True)
    (study_dir / STUDY_FILE).write_text(json.dumps({
        "study": "bn_ablation", "reproduces": study.reproduces, "profile": "smoke", "study_hash": study_hash,
        "kind": "grid", "trials": len(trials), "rows": ["dataset", *study.row_factors],
        "trial_list": [t.as_dict() for t in trials]}))
    for i, t in enumerate(trials):
        write_record(study_dir, {
            "study": "bn_ablation", "study_hash": study_hash, "profile": "smoke", "trial_key": t.key,
            "trial_id": t.key, "status": "finished", "error": None, "factors": t.factors, "config": t.config,
            "metrics": {"auroc": 0.9 + i / 100, "auroc_val": 0.9, "selected_epoch": 1, "epochs": 2},
            "history": [{"epoch": 0, "auroc_test": 0.5}, {"epoch": 1, "auroc_test": 0.9 + i / 100}],
            "node_id": "n", "hostname": "h", "recorded_at": 0.0,
        })
    write_results(study_dir)
    return study_dir, [t.key for t in trials]


def report(study_dir: Path, capsys, *flags: str) -> tuple[int, str, str]:
    code = main(["report", str(study_dir), *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ["results.parquet", "curves.parquet"])
def test_an_unreadable_parquet_file_is_named_and_rebuilt_from_rows(tmp_path, capsys, name):
    study_dir, keys = make_study_dir(tmp_path)
    (study_dir / name).write_bytes(b"PAR1 this is not a parquet file")
    code, out, err = report(study_dir, capsys)
    assert code == 0 and out.count("\n| digits |") == len(keys)  # the grid rows, not the comparisons'
    line = one_line(err)
    assert line.startswith(f"raygan: {study_dir / name} is unreadable") and "rows" in line
    assert len(pq.read_table(study_dir / "results.parquet")) == len(keys)  # rebuilt, readable again
    assert len(pq.read_table(study_dir / "curves.parquet")) == 2 * len(keys)


def test_an_unreadable_parquet_file_without_records_says_so(tmp_path, capsys):
    study_dir, _ = make_study_dir(tmp_path)
    for path in (study_dir / "rows").iterdir():
        path.unlink()
    (study_dir / "results.parquet").write_text("garbage")
    code, _, err = report(study_dir, capsys)
    assert code == 2 and "results.parquet is unreadable" in err and "has no finished trials yet" in err


def test_a_study_json_that_is_not_json_is_one_line_naming_it(tmp_path):
    study_dir, _ = make_study_dir(tmp_path)
    (study_dir / "study.json").write_text('{"study": "bn_abl')
    result = raygan("report", str(study_dir))
    line = one_line(result.stderr)
    assert result.returncode == 2 and line.startswith(f"raygan: error: {study_dir / 'study.json'} is damaged (not valid JSON")
    assert "--resume" in line


def test_a_truncated_record_is_named_and_skipped_with_the_flag(tmp_path, capsys):
    study_dir, keys = make_study_dir(tmp_path)
    damaged = study_dir / "rows" / f"{keys[1]}.json"
    damaged.write_text(damaged.read_text()[:40])  # what a crash mid-write used to leave
    (study_dir / "results.parquet").unlink()  # no intact copy of its row either: the trial is left out
    code, out, err = report(study_dir, capsys)
    line = one_line(err)
    assert code == 2 and f"{damaged} is damaged (not valid JSON" in line and "--skip-damaged" in line

    code, out, err = report(study_dir, capsys, "--skip-damaged")
    assert code == 0 and one_line(err).startswith(f"raygan: skipped {damaged} is damaged")
    assert "2 trials finished, 0 failed" in out and "| digits | yes | no | 0 | — | — |" in out  # its cell is empty
    assert sorted(pq.read_table(study_dir / "results.parquet").column("trial_key").to_pylist()) == \
        sorted(k for k in keys if k != keys[1])


def test_study_best_names_a_damaged_record_and_skips_it_with_the_flag(tmp_path, capsys):
    study_dir, keys = make_study_dir(tmp_path)
    damaged = study_dir / "rows" / f"{keys[2]}.json"
    damaged.write_text("{")
    (study_dir / "results.parquet").unlink()  # no intact copy of its row either: the trial is left out
    assert main(["study", "best", str(study_dir)]) == 2
    assert f"{damaged} is damaged" in one_line(capsys.readouterr().err)
    assert main(["study", "best", str(study_dir), "--skip-damaged"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["trial_key"] in keys[:2] and one_line(err).startswith("raygan: skipped")


def test_a_record_that_is_json_but_not_a_record_is_damaged(tmp_path, capsys):
    study_dir, keys = make_study_dir(tmp_path)
    (study_dir / "rows" / f"{keys[0]}.json").write_text("[]")
    code, _, err = report(study_dir, capsys)
    assert code == 2 and "is damaged (not a trial record: no study" in one_line(err)


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary_one(tmp_path):
    from raygan.core.atomic import atomic_path

    target = tmp_path / "results.parquet"
    target.write_text("previous")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half of the new fi")
        raise KeyboardInterrupt  # the process was stopped mid-write
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]


def test_writers_leave_only_their_files(tmp_path):
    """study.json, rows and both Parquet files go through a temporary file that is renamed away."""
    study_dir, keys = make_study_dir(tmp_path)
    names = {p.relative_to(study_dir).as_posix() for p in study_dir.rglob("*")}
    assert names == {"study.json", "results.parquet", "curves.parquet", "rows", *(f"rows/{k}.json" for k in keys)}


def _plan(resume: bool, storage: Path, name: str = "bn_ablation"):
    import argparse

    from raygan.cli.study import add_study_arguments, make_plan, options_from

    parser = argparse.ArgumentParser()
    add_study_arguments(parser)
    args = parser.parse_args(["--storage", str(storage), "--epochs", "2", *(["--resume"] if resume else [])])
    return make_plan(STUDIES.get(name), args), options_from(args)


def test_resume_writes_a_damaged_study_json_again(tmp_path, capsys):
    from raygan.store.manifest import read_manifest
    from raygan.tune.resume import prepare_study_dir

    plan, options = _plan(resume=True, storage=tmp_path)
    study_dir, _ = make_study_dir(tmp_path, study_hash=plan.study_hash)
    (study_dir / "study.json").write_text("")  # a crash before the rename would now leave the old file
    with pytest.raises(RayganError, match="study.json is damaged .*run the same command with --resume"):
        prepare_study_dir(*_plan(resume=False, storage=tmp_path))
    prepare_study_dir(plan, options)
    manifest, damage = read_manifest(study_dir / "study.json")
    assert damage is None and manifest["study_hash"] == plan.study_hash and manifest["trials"] == 6
    assert "was damaged; written again" in capsys.readouterr().err


def test_resume_does_not_write_study_json_over_another_studys_records(tmp_path):
    from raygan.tune.resume import prepare_study_dir

    plan, options = _plan(resume=True, storage=tmp_path)
    study_dir, _ = make_study_dir(tmp_path, study_hash="another")
    (study_dir / "study.json").write_text("{")
    with pytest.raises(RayganError, match="belong to other trials \\(hash another"):
        prepare_study_dir(plan, options)
    assert (study_dir / "study.json").read_text() == "{"


def test_provenance_counts_a_killed_driver_up_to_its_last_recorded_trial():
    """Two drivers: the first killed (no end event) after recording trials at +100 s and +600 s, the
    second ended cleanly. Wall time is 600 + 300 s and the span ends at the second driver's end."""
    from raygan.analysis.study_export import driver_wall_seconds

    events = [{"event": "start", "time": 1000.0}, {"event": "start", "time": 5000.0},
              {"event": "end", "time": 5300.0}]
    records = [{"recorded_at": 1100.0}, {"recorded_at": 1600.0}, {"recorded_at": 5200.0}]
    assert driver_wall_seconds(events, records) == (900.0, 2, 5300.0)
    # one killed driver alone: its span ends at its last record, not at its start
    assert driver_wall_seconds(events[:1], records[:2]) == (600.0, 1, 1600.0)


def test_resume_refuses_a_new_max_concurrent_that_tune_would_ignore(tmp_path):
    """Tune restores an experiment with the concurrency it started with: a different --max-concurrent
    on --resume is refused in one message before Ray starts; the same value, or a copy of an export
    (no Tune experiment, so the new value applies), goes on."""
    from dataclasses import replace

    from raygan.tune.driver import run_plan
    from raygan.tune.resume import check_resumed_concurrency, prepare_study_dir

    plan, options = _plan(resume=False, storage=tmp_path)
    study_dir = prepare_study_dir(plan, replace(options, max_concurrent=1))
    (study_dir / "tune").mkdir()
    (study_dir / "tune" / "tuner.pkl").write_bytes(b"")
    resumed = replace(options, resume=True)
    with pytest.raises(RayganError) as refused:
        run_plan(plan, replace(resumed, max_concurrent=2))
    assert str(refused.value).startswith(f"--resume --max-concurrent 2: {study_dir} started with --max-concurrent 1")
    assert "resume without --max-concurrent; to change it, continue from an export" in str(refused.value)
    check_resumed_concurrency(plan, replace(resumed, max_concurrent=1), study_dir)  # the same: goes on
    check_resumed_concurrency(plan, resumed, study_dir)  # not given: the restored value, no question
    (study_dir / "tune" / "tuner.pkl").unlink()
    check_resumed_concurrency(plan, replace(resumed, max_concurrent=2), study_dir)  # an export's copy

    # a search started without --max-concurrent ran 1 at a time: resuming with 1 is no change
    search, search_options = _plan(resume=False, storage=tmp_path / "s", name="hpo")
    search_dir = prepare_study_dir(search, search_options)
    (search_dir / "tune").mkdir()
    (search_dir / "tune" / "tuner.pkl").write_bytes(b"")
    check_resumed_concurrency(search, replace(resumed, max_concurrent=1), search_dir)
    with pytest.raises(RayganError, match="started with 1 trial at a time .a search's default."):
        check_resumed_concurrency(search, replace(resumed, max_concurrent=2), search_dir)


def test_provenance_names_the_drivers_commits_not_the_exporters(tmp_path):
    """The results rows carry the commit of the process that wrote the Parquet files (an export
    too); PROVENANCE.md names the commits and versions the study's drivers ran."""
    from raygan.analysis.study_export import provenance_text

    (tmp_path / "drivers.jsonl").write_text(json.dumps({
        "event": "start", "time": 1000.0, "hostname": "vm", "cpu": "AMD EPYC", "cores": 2,
        "git_revision": "trainer", "torch_version": "2.13.0"}) + "\n")
    rows = [{"status": "finished", "git_revision": "exporter+dirty", "torch_version": "9.9", "train_seconds": 5.0}]
    text = provenance_text(tmp_path, {"study": "s", "profile": "cpu", "study_hash": "h", "trials": 1}, rows,
                           [{"recorded_at": 1300.0}], [])
    assert "- commits (of the drivers): trainer\n" in text and "exporter" not in text
    assert "torch 2.13.0," in text and "9.9" not in text
    assert "wall time: 5.0 min over 1 driver run(s)" in text
