"""Studies without training: every registered study expands reproducibly under every profile, with
the paper's trial counts and reference numbers; flags and bad input give clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raygan.errors import ConfigError, RayganError
from raygan.study import (
    Factor,
    Profile,
    Study,
    expand,
    load_studies,
    narrow_profile,
    parse_paper_cell,
    search_base,
    study_hash,
)

ROOT = Path(__file__).resolve().parents[1]
STUDIES = load_studies()
# Trials under `paper` (papers/004; the counts): cells x classes x 3 seeds.
PAPER_TRIALS = {"bn_ablation": 2160}


def grid_studies():
    return [n for n in STUDIES if not STUDIES.get(n).is_search]


def test_every_study_file_is_registered():
    files = {p.stem for p in (ROOT / "studies").glob("*.py") if not p.name.startswith("_")}
    assert files == set(STUDIES.names())


@pytest.mark.parametrize("name", STUDIES.names())
def test_every_profile_expands_the_same_way_twice(name):
    study = STUDIES.get(name)
    assert {"smoke", "paper"} <= set(study.profiles)
    for profile_name, profile in study.profiles.items():
        if study.is_search:
            a, b = search_base(study, profile), search_base(study, profile)
            assert a == b and profile.samples
            continue
        first, second = expand(study, profile), expand(study, profile)
        assert [t.as_dict() for t in first] == [t.as_dict() for t in second]
        assert study_hash(study, profile_name, first, None) == study_hash(study, profile_name, second, None)
        keys = [t.key for t in first]
        assert len(set(keys)) == len(keys), "trial keys must be unique (they name trial directories)"
        # the seed is a grid axis: every cell repeats over exactly the profile's seeds
        cells: dict[tuple, list[int]] = {}
        for t in first:
            cell = tuple(v for k, v in t.factors.items() if k != "seed")
            cells.setdefault(cell, []).append(t.factors["seed"])
            assert t.config["data"]["seed"] == t.factors["seed"]
        assert all(sorted(s) == sorted(profile.seeds) for s in cells.values())


@pytest.mark.parametrize("name", sorted(PAPER_TRIALS))
def test_paper_profile_has_the_paper_tables_trial_count(name):
    assert len(expand(STUDIES.get(name), STUDIES.get(name).profile("paper"))) == PAPER_TRIALS[name]


def test_bn_ablation_cells_match_table_5():
    study = STUDIES.get("bn_ablation")
    trials = expand(study, study.profile("paper"))
    by_strategy: dict[str, set] = {}
    for t in trials:
        assert t.config["model"]["backbone"] == "unet"  # papers/004 §6
        by_strategy.setdefault(t.config["model"]["bn_strategy"], set()).add(t.config["data"]["anomaly_fraction"])
    # frozen BN only where there are true anomalies to freeze for (γ > 0)
    assert by_strategy["shared"] == by_strategy["advprop"] == {0.0, 0.01, 0.03, 0.05, 0.1}
    assert by_strategy["freeze"] == by_strategy["advprop+freeze"] == {0.01, 0.03, 0.05, 0.1}
    # the paper gives a number for every row of its table: 3 data sets x 18 (AdvProp, Freeze, γ) cells
    rows = {(t.factors["dataset"], t.factors["advprop"], t.factors["freeze"], t.factors["gamma"]) for t in trials}
    assert len(rows) == 54 and all(study.paper.get(r) is not None for r in rows)
    assert study.paper.get(("cifar10", True, False, 0.0)) == (92.6, 7.76)  # = Table 4's full model


def test_paper_cells_parse():
    assert parse_paper_cell("98.2±2.45") == (98.2, 2.45)
    assert parse_paper_cell("100.") == (100.0, None)
    assert parse_paper_cell("-") is None
    with pytest.raises(ValueError, match="cannot read paper cell"):
        parse_paper_cell("n/a")


def test_flags_narrow_and_extend_a_profile():
    study = STUDIES.get("bn_ablation")
    profile = narrow_profile(study.profile("paper"), datasets=["fashion_mnist"], classes=[1, 7], seeds=[5], epochs=2)
    trials = expand(study, profile)
    assert len(trials) == 2 * 18
    assert {t.factors["class_index"] for t in trials} == {1, 7}
    assert {t.config["train"]["epochs"] for t in trials} == {2} and {t.factors["seed"] for t in trials} == {5}


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(classes=[12]), "class 12 is not a class of digits"),
        (dict(datasets=["imagenet"]), "unknown dataset 'imagenet'"),
        (dict(epochs=0), "--epochs must be >= 1"),
    ],
)
def test_bad_flags_name_what_is_wrong(change, message):
    study = STUDIES.get("bn_ablation")
    with pytest.raises(ConfigError, match=message):
        expand(study, narrow_profile(study.profile("smoke"), **change))


def test_a_bad_config_in_a_study_fails_before_anything_runs():
    study = Study(
        name="t", reproduces="test", caption="", base={"method": "agad"},
        factors=(Factor("batch", (64, 0), key="train.batch_size"),),
        profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (0,)}, seeds=(0,))},
    )
    with pytest.raises(ConfigError, match=r"trial digits-c0-batch0-s0: train.batch_size must be >= 1"):
        expand(study, study.profile("smoke"))


def test_a_search_optimises_one_dataset_class_and_seed():
    study = STUDIES.get("hpo")
    with pytest.raises(ConfigError, match="a search optimises one dataset, class and seed"):
        search_base(study, narrow_profile(study.profile("smoke"), classes=[1, 2]))


def test_search_space_samples_valid_configs_with_conditionals():
    optuna = pytest.importorskip("optuna")
    from raygan.config import RunConfig
    from raygan.methods import METHODS
    from raygan.study import apply_sampled

    study = STUDIES.get("hpo")
    profile = study.profile("smoke")
    base = search_base(study, profile)
    sampler = optuna.samplers.RandomSampler(seed=0)
    search = optuna.create_study(sampler=sampler)
    seen = set()
    for _ in range(30):
        trial = search.ask()
        constants = study.search_space(trial, profile) or {}
        cfg = RunConfig.from_dict(apply_sampled(base.config, {**trial.params, **constants}))
        METHODS.get(cfg.method).resolve(cfg)  # the method accepts every sampled combination
        on = trial.params["contextual_adversarial"]  # noqa: F841
        assert ("loss.contextual_adversarial_weight" in trial.params) == on
        assert on or cfg.loss.contextual_adversarial_weight == 0.0 and cfg.model.bn_strategy in ("shared", "freeze")
        seen.add(cfg.model.bn_strategy)
        search.tell(trial, 0.5)
    assert {"shared", "advprop"} <= seen


def _study_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "studies" / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_dry_run_prints_trials_and_ends_with_json():
    result = _study_script("bn_ablation", "--profile", "paper", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["study"] == "bn_ablation" and summary["profile"] == "paper" and summary["trials"] == 2160
    assert summary["estimated_worker_hours"] > 100
    assert sum(1 for line in lines if line.startswith(("fashion_mnist-", "cifar10-", "cifar100-"))) == 2160


def test_raygan_study_run_dry_run_matches_the_script():
    cli = subprocess.run([sys.executable, "-m", "raygan", "study", "run", "hpo", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    script = _study_script("hpo", "--dry-run")
    assert cli.returncode == 0 and script.returncode == 0, cli.stderr + script.stderr
    assert json.loads(cli.stdout.splitlines()[-1]) == json.loads(script.stdout.splitlines()[-1])
    assert json.loads(cli.stdout.splitlines()[-1])["trials"] == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["--profile", "full"], "has no profile 'full'; choose one of: smoke, paper"),
        (["--classes", "10", "--dry-run"], "class 10 is not a class of digits"),
        (["--resume"], "--resume: nothing to resume at"),
    ],
)
def test_study_script_errors_are_one_line(args, message, tmp_path):
    result = _study_script("bn_ablation", "--storage", str(tmp_path), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_report_of_a_wrong_directory_says_what_to_pass(tmp_path):
    result = subprocess.run([sys.executable, "-m", "raygan", "report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "is not a study directory" in result.stderr


def test_registry_rejects_unknown_study():
    with pytest.raises(RayganError, match="unknown study 'nope'; choose one of: bn_ablation"):
        STUDIES.get("nope")


def test_batch_too_small_for_the_anomaly_quota_fails_at_expansion():
    study = Study(
        name="t", reproduces="test", caption="", base={"method": "agad", "train": {"batch_size": 32}},
        factors=(Factor("gamma", (0.0, 0.1), key="data.anomaly_fraction"),),
        profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (0,)}, seeds=(0,))},
    )
    with pytest.raises(ConfigError, match=r"trial digits-c0-gamma0.1-s0: train.batch_size 32 leaves no room"):
        expand(study, study.profile("smoke"))


def _fake_study_dir(tmp_path: Path, aurocs: dict[tuple[int, int], float]) -> Path:
    """A bn_ablation study directory with records as the Tune layer writes them (no training)."""
    from raygan.tuning import STUDY_FILE, write_record

    study = STUDIES.get("bn_ablation")
    profile = narrow_profile(study.profile("paper"), datasets=["fashion_mnist"], classes=[0, 1], seeds=[0, 1])
    trials = [t for t in expand(study, profile) if t.factors["advprop"] and not t.factors["freeze"]
              and t.factors["gamma"] == 0.0]
    study_dir = tmp_path / "bn_ablation"
    study_dir.mkdir(parents=True)
    manifest = {"study": "bn_ablation", "reproduces": study.reproduces, "profile": "paper", "study_hash": "h",
                "kind": "grid", "trials": len(trials), "rows": ["dataset", *study.rows],
                "trial_list": [t.as_dict() for t in trials]}
    (study_dir / STUDY_FILE).write_text(json.dumps(manifest))
    for t in trials:
        auroc = aurocs[t.factors["class_index"], t.factors["seed"]]
        write_record(study_dir, {
            "study": "bn_ablation", "study_hash": "h", "profile": "paper", "trial_key": t.key, "trial_id": t.key,
            "status": "finished", "error": None, "factors": t.factors, "config": t.config,
            "metrics": {"auroc": auroc, "auroc_val": auroc - 0.01, "auroc_last": auroc, "selected_epoch": 1,
                        "epochs": 2}, "history": [{"epoch": 0, "auroc_val": 0.5}, {"epoch": 1, "auroc_val": auroc}],
            "node_id": "n", "hostname": "h", "recorded_at": 0.0,
        })
    return study_dir


def test_report_is_the_paper_layout_with_the_paper_beside_ours(tmp_path):
    from raygan.report import best_trial, report

    study_dir = _fake_study_dir(tmp_path, {(0, 0): 0.90, (0, 1): 0.94, (1, 0): 0.96, (1, 1): 0.98})
    table = report(study_dir)
    # class 0: 92.0 ± 2.8 over seeds; class 1: 97.0 ± 1.4; avg 94.5, SD over class means 3.5;
    # paper (F-MNIST, AdvProp, no Freeze, γ = 0): 98.3 ± 2.21, so Δ = −3.8
    assert "| dataset | advprop | freeze | gamma | class 0 | class 1 | avg | SD | paper | Δ |" in table
    assert "| fashion_mnist | yes | no | 0 | 92.0±2.8 | 97.0±1.4 | 94.5 | 3.5 | 98.3±2.2 | -3.8 |" in table
    csv_text = report(study_dir, "csv")
    assert csv_text.splitlines()[1] == "fashion_mnist,yes,no,0,92,2.828,97,1.414,94.5,3.536,98.3,2.21,-3.8"
    best = best_trial(study_dir)
    assert best["auroc_val"] == pytest.approx(0.97) and best["trial_key"].startswith("fashion_mnist-c1-")

