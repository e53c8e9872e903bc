"""Studies without training: every registered study expands reproducibly under every profile, with
the paper's trial counts and reference numbers; flags and bad input give clear errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
import statistics
import subprocess
from pathlib import Path

import pytest
from inprocess import raygan, study_script

from raygan.core.errors import ConfigError, RayganError
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
# Trials under `paper` (papers/004 and papers/002; the counts): cells x classes x 3 seeds.
PAPER_TRIALS = {
    "bn_ablation": 2160,
    "one_class": 600,  # 4 methods x 50 classes
    "supervision": 450,  # 30 classes x 5 γ
    "medical": 120,  # 4 sets x 5 γ x C.A. on/off
    "ca_ablation": 1200,  # 40 classes x 5 γ x 2 λ_adcon
    "backbones": 450,  # 50 classes x 3 generators
    "latent_size": 210,  # 10 classes x 7 sizes
    "ganomaly_weights": 480,  # 10 classes x 16 weightings
    "hpo_confirm": 60,  # no paper table: 10 classes x 2 methods, the paper profile's budget
}
# Rows of each paper table (dataset, *study.row_factors) and how many of them the paper gives a number for.
PAPER_ROWS = {
    "bn_ablation": (54, 54),
    "one_class": (16, 4),  # AGAD's row per data set; GANomaly, Skip-GANomaly, autoencoder are ours only
    "supervision": (15, 15),
    "medical": (40, 38),  # ChestXray at γ = .01: "- -"
    "ca_ablation": (30, 30),
    "backbones": (12, 12),
    "latent_size": (7, 0),  # papers/002 gives the best size only
    "ganomaly_weights": (16, 0),
    "hpo_confirm": (2, 0),  # the searched AGAD and GANomaly, ours only
}
MEDICAL_CLASSES = {
    "alzheimers": ("split", ["MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented"]),
    "chest_xray": ("split", ["NORMAL", "PNEUMONIA"]),
    "lung_histopathology": ("flat", ["lung_aca", "lung_n", "lung_scc"]),
    "retinal_oct": ("split", ["CNV", "DME", "DRUSEN", "NORMAL"]),
}


def medical_root(tmp_path: Path, skip: str | None = None) -> Path:
    """The four medical sets laid out as their public releases are (a few real PNGs per class)."""
    from PIL import Image

    root = tmp_path / "medical"
    for name, (layout, classes) in MEDICAL_CLASSES.items():
        if name == skip:
            continue
        for part in ("train", "test") if layout == "split" else ("",):
            for c, class_name in enumerate(classes):
                folder = root / name / part / class_name
                folder.mkdir(parents=True)
                for i in range(3):
                    Image.new("L", (20, 20), 40 * c + 10 * i).save(folder / f"img{i}.png")
    return root


def overrides_for(study: Study, tmp_path: Path) -> dict | None:
    """What a user passes: --data-root for studies that read the user's own image folders."""
    return {"data": {"data_root": str(medical_root(tmp_path))}} if study.folder_datasets else None


def grid_studies():
    return [n for n in STUDIES if not STUDIES.get(n).is_search]


def test_every_study_file_is_registered():
    files = {p.stem for p in (ROOT / "studies").glob("*.py") if not p.name.startswith("_")}
    assert files == set(STUDIES.names())


@pytest.mark.parametrize("name", STUDIES.names())
def test_every_profile_expands_the_same_way_twice(name, tmp_path):
    study = STUDIES.get(name)
    assert {"smoke", "paper"} <= set(study.profiles)
    overrides = overrides_for(study, tmp_path)
    for profile_name, profile in study.profiles.items():
        if study.is_search:
            a, b = search_base(study, profile), search_base(study, profile)
            assert a == b and profile.samples
            continue
        first, second = expand(study, profile, overrides), expand(study, profile, overrides)
        assert [t.as_dict() for t in first] == [t.as_dict() for t in second]
        assert study_hash(study, profile_name, first, None) == study_hash(study, profile_name, second, None)
        keys = [t.key for t in first]
        assert len(set(keys)) == len(keys), "trial keys must be unique (they name trial directories)"
        # the seed is a grid axis: every cell repeats over exactly the profile's seeds (those its
        # `where` keeps for that cell)
        cells: dict[tuple, list[int]] = {}
        for t in first:
            cell = tuple((k, v) for k, v in t.factors.items() if k != "seed")
            cells.setdefault(cell, []).append(t.factors["seed"])
            assert t.config["data"]["seed"] == t.factors["seed"]
        for cell, seeds in cells.items():
            kept = [s for s in profile.seeds if profile.where is None or profile.where({**dict(cell), "seed": s})]
            assert sorted(seeds) == sorted(kept), cell


def test_every_grid_study_has_its_paper_count():
    assert set(PAPER_TRIALS) == set(grid_studies()) == set(PAPER_ROWS)


@pytest.mark.parametrize("name", sorted(PAPER_TRIALS))
def test_paper_profile_has_the_paper_tables_trial_count(name, tmp_path):
    study = STUDIES.get(name)
    assert len(expand(study, study.profile("paper"), overrides_for(study, tmp_path))) == PAPER_TRIALS[name]


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_each_cell_has_the_papers_number_where_the_paper_gives_one(name, tmp_path):
    study = STUDIES.get(name)
    trials = expand(study, study.profile("paper"), overrides_for(study, tmp_path))
    rows = {(t.factors["dataset"], *(t.factors[f] for f in study.row_factors)) for t in trials}
    reported = {r for r in rows if study.paper is not None and study.paper.get(r) is not None}
    assert (len(rows), len(reported)) == PAPER_ROWS[name]
    if study.paper is not None:
        # every transcribed number belongs to a cell the study runs (no key that matches nothing)
        assert set(study.paper.values) <= rows and set(study.paper.per_class) <= set(study.paper.values)
        classes = {}
        for t in trials:
            classes.setdefault(t.factors["dataset"], set()).add(t.factors["class_index"])
        for row, per_class in study.paper.per_class.items():
            assert len(per_class) == len(classes[row[0]]), row  # one number per class of the data set
        for mean, sd in study.paper.values.values():
            assert 0 < mean <= 100 and (sd is None or 0 <= sd < 50)


# Rows whose printed avg does not follow from their printed classes (a misprint in papers/004,
# transcribed as printed): MNIST naive (= Table 1's MNIST "Ours"), MNIST UNet++, CIFAR-100 naive.
PRINTED_AVG_DIFFERS = {("mnist", "naive"), ("mnist", "unetpp"), ("cifar100", "naive"), ("mnist", "agad")}


@pytest.mark.parametrize("name", ["one_class", "backbones"])
def test_class_by_class_numbers_agree_with_the_printed_average(name):
    import statistics

    paper = STUDIES.get(name).paper
    assert paper.per_class
    for row, per_class in paper.per_class.items():
        avg, sd = paper.get(row)
        if row in PRINTED_AVG_DIFFERS:
            assert abs(statistics.fmean(per_class) - avg) > 0.1
            continue
        assert statistics.fmean(per_class) == pytest.approx(avg, abs=0.1), row
        assert statistics.pstdev(per_class) == pytest.approx(sd, abs=0.06), row  # the paper's SD: population


def test_paper_tables_agree_where_the_paper_repeats_a_model():
    one_class, backbones = STUDIES.get("one_class").paper, STUDIES.get("backbones").paper
    supervision, ca, bn = (STUDIES.get(n).paper for n in ("supervision", "ca_ablation", "bn_ablation"))
    for dataset in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        generator = "naive" if dataset == "mnist" else "unetpp"  # Table 1's footnote
        assert one_class.classes((dataset, "agad")) == backbones.classes((dataset, generator))
        assert one_class.get((dataset, "agad")) == backbones.get((dataset, generator))
    for dataset in ("mnist", "fashion_mnist", "cifar10"):
        assert supervision.get((dataset, 0.0)) == one_class.get((dataset, "agad"))  # Table 2, γ = 0
    for dataset in ("fashion_mnist", "cifar10", "cifar100"):
        for gamma in (0.0, 0.01, 0.03, 0.05, 0.1):
            # Table 4's "w/" = Table 5's AdvProp row: the reading both study files rely on
            assert ca.get((dataset, 15.0, gamma)) == bn.get((dataset, True, False, gamma))
    assert ca.get(("cifar10", 0.0, 0.0)) == (88.9, 10.43) and ca.get(("cifar100", 15.0, 0.01)) == (97.1, 6.2)
    assert backbones.classes(("cifar100", "unet"))[13] == 74.7 and backbones.get(("cifar100", "unet")) == (92.8, 11.5)
    assert STUDIES.get("medical").paper.get(("retinal_oct", 0.05, 0.0)) == (72.3, None)
    assert STUDIES.get("medical").paper.get(("chest_xray", 0.01, 15.0)) is None


def test_one_class_trains_agad_with_the_papers_generators_and_the_baselines_with_theirs():
    study = STUDIES.get("one_class")
    from raygan.core.config import RunConfig
    from raygan.methods import METHODS

    seen = {}
    for t in expand(study, narrow_profile(study.profile("paper"), classes=[0], seeds=[0])):
        cfg = METHODS.get(t.config["method"]).resolve(RunConfig.from_dict(t.config))
        seen[t.factors["dataset"], t.factors["method"]] = cfg.model.backbone
        assert cfg.data.anomaly_fraction == 0.0
    assert seen["mnist", "agad"] == "naive" and seen["cifar100", "agad"] == "unetpp"  # Table 1 footnote
    assert {seen[d, "ganomaly"] for d in ("mnist", "cifar10")} == {"ganomaly"}
    assert seen["cifar10", "skip_ganomaly"] == "unet" and seen["cifar10", "autoencoder"] == "naive"


def test_one_class_cpu_profile_runs_agad_naive_and_repeats_seeds_only_where_methods_are_close():
    from raygan.core.config import RunConfig
    from raygan.methods import METHODS

    study = STUDIES.get("one_class")
    trials = expand(study, study.profile("cpu"))
    assert len(trials) == 54 and {t.factors["dataset"] for t in trials} == {"fashion_mnist"}
    for t in trials:
        cfg = METHODS.get(t.config["method"]).resolve(RunConfig.from_dict(t.config))
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (5, 64, 2e-4)
        assert cfg.model.backbone == {"agad": "naive", "ganomaly": "ganomaly", "autoencoder": "naive"}[t.factors["method"]]
        assert cfg.model.bn_strategy == ("advprop" if t.factors["method"] == "agad" else "shared")
    seeds: dict[tuple, set] = {}
    for t in trials:
        seeds.setdefault((t.factors["method"], t.factors["class_index"]), set()).add(t.factors["seed"])
    assert seeds["agad", 4] == seeds["ganomaly", 4] == {0, 1, 2}
    assert seeds["agad", 8] == seeds["autoencoder", 4] == {0}


def test_medical_reads_each_set_from_its_folder_at_128_with_its_normal_class(tmp_path):
    study = STUDIES.get("medical")
    root = medical_root(tmp_path)
    trials = expand(study, study.profile("paper"), {"data": {"data_root": str(root)}})
    by_set = {t.factors["dataset"]: t for t in trials if t.factors["seed"] == 0}
    normal = {"alzheimers": 2, "chest_xray": 0, "lung_histopathology": 1, "retinal_oct": 3}
    for name, trial in by_set.items():
        data = trial.config["data"]
        assert data["dataset"] == "image_folder" and data["image_size"] == 128
        assert data["data_root"] == str((root / name).resolve()) and data["class_index"] == normal[name]
        assert trial.key.startswith(f"{name}-c{normal[name]}-")
    assert {(t.factors["gamma"], t.config["loss"]["contextual_adversarial_weight"]) for t in trials} == {
        (g, w) for g in (0.0, 0.01, 0.03, 0.05, 0.1) for w in (0.0, 15.0)}


def test_medical_names_the_missing_folder(tmp_path):
    study = STUDIES.get("medical")
    root = medical_root(tmp_path, skip="chest_xray")
    with pytest.raises(ConfigError, match=rf"data set chest_xray: folder {root / 'chest_xray'} does not exist; put "
                                          r"the ChestXray pneumonia set"):
        expand(study, study.profile("paper"), {"data": {"data_root": str(root)}})
    with pytest.raises(ConfigError, match=r"pass --data-root DIR where DIR/alzheimers/ holds it"):
        expand(study, study.profile("paper"))
    (root / "alzheimers" / "train" / "NonDemented").rename(root / "alzheimers" / "train" / "Healthy")
    with pytest.raises(ConfigError, match=r"the normal class folder 'NonDemented' is not among them"):
        expand(study, narrow_profile(study.profile("paper"), datasets=["alzheimers"]),
               {"data": {"data_root": str(root)}})


def test_medical_script_says_which_folder_is_missing_in_one_line(tmp_path):
    root = medical_root(tmp_path, skip="retinal_oct")
    result = _study_script("medical", "--profile", "paper", "--data-root", str(root), "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (
        f"raygan: error in python studies/medical.py --profile paper --data-root {root} --dry-run: "
        f"data set retinal_oct: folder {root / 'retinal_oct'} does not exist; put the retinal OCT "
        "set (Kermany et al. 2018, OCT2017: CNV, DME, DRUSEN, NORMAL) there (one sub-folder per class, or train/ "
        "and test/ with one each), or pass --data-root DIR holding retinal_oct/")


@pytest.mark.parametrize("name", sorted(set(PAPER_TRIALS) - {"bn_ablation"}))
def test_dry_run_json_line_gives_the_paper_count(name, tmp_path, capsys):
    from raygan.cli.study import main

    extra = ["--data-root", str(medical_root(tmp_path))] if STUDIES.get(name).folder_datasets else []
    with pytest.raises(SystemExit) as exited:  # the script's own entry point, in-process (seconds faster)
        main(STUDIES.get(name), ["--profile", "paper", "--dry-run", *extra])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["study"] == name and summary["profile"] == "paper" and summary["trials"] == PAPER_TRIALS[name]
    assert summary["estimated_worker_hours"] > 0


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


def test_a_search_over_several_classes_and_seeds_has_one_instance_each_in_one_fixed_order():
    from raygan.study import search_instances

    study = STUDIES.get("hpo")
    profile = narrow_profile(study.profile("smoke"), classes=[1, 2, 5], seeds=[0, 1])
    instances = search_instances(study, profile)
    assert instances == search_instances(study, profile) and search_base(study, profile) == instances[0]
    keys = [i.key for i in instances]
    first_round = [k.removesuffix("-s0") for k in keys[:3]]
    assert sorted(first_round) == ["digits-c1", "digits-c2", "digits-c5"]  # every class before the next seed
    assert keys[3:] == [f"{k}-s1" for k in first_round]  # the next seed visits the classes in the same order
    for instance in instances:
        data = instance.config["data"]
        assert (data["dataset"], data["class_index"], data["seed"]) == tuple(instance.factors.values())
    assert [i.key for i in search_instances(study, study.profile("smoke"))] == ["digits-c3-s0"]


def test_search_space_samples_valid_configs_with_conditionals():
    optuna = pytest.importorskip("optuna")
    from raygan.core.config import RunConfig
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
        assert ("loss.contextual_adversarial_wrap" in trial.params) == on
        assert on or cfg.loss.contextual_adversarial_weight == 0.0 and cfg.model.bn_strategy in ("shared", "freeze")
        seen.add(cfg.model.bn_strategy)
        search.tell(trial, 0.5)
    assert {"shared", "advprop"} <= seen


def _study_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python studies/<name>.py ARGS`` through the script's entry point, in-process."""
    return study_script(STUDIES.get(name), *args)


def test_dry_run_prints_trials_and_ends_with_json():
    result = _study_script("bn_ablation", "--profile", "paper", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["study"] == "bn_ablation" and summary["profile"] == "paper" and summary["trials"] == 2160
    assert summary["estimated_worker_hours"] > 100
    assert sum(1 for line in lines if line.startswith(("fashion_mnist-", "cifar10-", "cifar100-"))) == 2160


def test_raygan_study_run_dry_run_matches_the_script():
    cli = raygan("study", "run", "hpo", "--dry-run")
    script = _study_script("hpo", "--dry-run")
    assert cli.returncode == 0 and script.returncode == 0, cli.stderr + script.stderr
    assert json.loads(cli.stdout.splitlines()[-1]) == json.loads(script.stdout.splitlines()[-1])
    assert json.loads(cli.stdout.splitlines()[-1])["trials"] == 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["--profile", "full"], "has no profile 'full'; choose one of: smoke, cpu, paper"),
        (["--classes", "10", "--dry-run"], "class 10 is not a class of digits"),
        (["--resume"], "--resume: nothing to resume at"),
    ],
)
def test_study_script_errors_are_one_line(args, message, tmp_path, capsys):
    from raygan.cli.study import main

    with pytest.raises(SystemExit) as exited:  # the script's entry point, in-process (a real run: below)
        main(STUDIES.get("bn_ablation"), ["--storage", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and "Traceback" not in err, err
    # one line, raygan's, naming the command as it was run
    (line,) = err.strip().splitlines()
    assert line.startswith(f"raygan: error in python studies/bn_ablation.py --storage {tmp_path} {' '.join(args)}: ")


def test_study_script_usage_errors_are_raygans_one_line(tmp_path):
    result = _study_script("bn_ablation", "--epochs", "two")
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line == ("raygan: error in python studies/bn_ablation.py --epochs two: argument "
                                               "--epochs: invalid int value: 'two' (see --help)")


def test_report_of_a_wrong_directory_says_what_to_pass(tmp_path):
    result = raygan("report", str(tmp_path))
    assert result.returncode == 2 and "is not a study directory" in result.stderr


def test_registry_rejects_unknown_study():
    with pytest.raises(RayganError, match="unknown study 'nope'; choose one of: backbones, bn_ablation, ca_ablation"):
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
    from raygan.store.layout import STUDY_FILE
    from raygan.store.records import write_record

    study = STUDIES.get("bn_ablation")
    profile = narrow_profile(study.profile("paper"), datasets=["fashion_mnist"], classes=[0, 1], seeds=[0, 1])
    trials = [t for t in expand(study, profile) if t.factors["advprop"] and not t.factors["freeze"]
              and t.factors["gamma"] == 0.0]
    study_dir = tmp_path / "bn_ablation"
    study_dir.mkdir(parents=True)
    manifest = {"study": "bn_ablation", "reproduces": study.reproduces, "profile": "paper", "study_hash": "h",
                "kind": "grid", "trials": len(trials), "rows": ["dataset", *study.row_factors],
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
    from raygan.analysis.report import best_trial, report

    study_dir = _fake_study_dir(tmp_path, {(0, 0): 0.90, (0, 1): 0.94, (1, 0): 0.96, (1, 1): 0.98})
    table = report(study_dir)
    # class 0: 92.0 ± 2.8 over seeds; class 1: 97.0 ± 1.4; avg 94.5, population SD over class means 2.5 (as the paper's ±);
    # paper (F-MNIST, AdvProp, no Freeze, γ = 0): 98.3 ± 2.21, so Δ = −3.8
    assert "| dataset | advprop | freeze | gamma | class 0 | class 1 | avg | SD | paper | Δ |" in table
    assert "| fashion_mnist | yes | no | 0 | 92.0±2.8 | 97.0±1.4 | 94.5 | 2.5 | 98.3±2.2 | -3.8 |" in table
    csv_text = report(study_dir, "csv")
    assert csv_text.splitlines()[1] == "fashion_mnist,yes,no,0,92,2.828,97,1.414,94.5,2.5,98.3,2.21,-3.8"
    best = best_trial(study_dir)
    assert best["auroc_val"] == pytest.approx(0.97) and best["trial_key"].startswith("fashion_mnist-c1-")



def test_verdict_rule_tolerates_two_standard_errors_over_seeds_and_at_least_one_point(tmp_path):
    from raygan.analysis.report import report
    from raygan.analysis.verdicts import verdict, verdict_rows
    from raygan.analysis.parquet import read_results

    assert verdict(97.3, 98.3, 1.0) == "reproduced" and verdict(97.2, 98.3, 1.0) == "not reproduced"
    assert verdict(99.9, 98.3, 1.0) == "reproduced"  # above the paper: its claim holds
    assert verdict(50.0, None, 1.0) == "no paper number"

    # class 0: 92 ± 2.83 over two seeds, class 1: 97 ± 1.41; avg 94.5, SE sqrt(2.83²/2 + 1.41²/2)/2 = 1.118,
    # tolerance 2.24, paper 98.3 (F-MNIST, AdvProp, γ = 0): not reproduced
    study_dir = _fake_study_dir(tmp_path / "a", {(0, 0): 0.90, (0, 1): 0.94, (1, 0): 0.96, (1, 1): 0.98})
    info, rows = read_results(study_dir)
    (entry,) = verdict_rows(info, rows, STUDIES.get("bn_ablation"))
    assert entry["class"] == "avg" and entry["ours"] == pytest.approx(94.5) and entry["paper"] == 98.3
    assert entry["tolerance"] == pytest.approx(math.sqrt(5)) and entry["verdict"] == "not reproduced"
    assert entry["sd"] == pytest.approx(statistics.stdev([93.0, 96.0]))  # over seeds of the class average
    assert entry["note"] == "ours over classes 0 1 of 10, the paper's over all"
    # within 1.41 points (2 SE) of 98.3: reproduced
    study_dir = _fake_study_dir(tmp_path / "b", {(0, 0): 0.97, (0, 1): 0.99, (1, 0): 0.97, (1, 1): 0.99})
    info, rows = read_results(study_dir)
    (entry,) = verdict_rows(info, rows, STUDIES.get("bn_ablation"))
    assert entry["ours"] == pytest.approx(98.0) and entry["tolerance"] == pytest.approx(math.sqrt(2))
    assert entry["verdict"] == "reproduced"
    table = report(study_dir)
    assert "| fashion_mnist | yes | no | 0 | avg | 98.0±1.4 | 2 | — | 98.3 | -0.3 | 1.4 | **reproduced** |" in table


def _fake_one_class_dir(tmp_path: Path, aurocs: dict[tuple[str, int, int], float], name: str = "one_class") -> Path:
    """A one_class (or another method-by-class study's) directory of its cpu profile's trials with
    the given (method, class, seed) AUROCs as records, as the Tune layer writes them; no training."""
    study = STUDIES.get(name)
    profile = narrow_profile(study.profile("cpu"), classes=sorted({c for _, c, _ in aurocs}))

    def metrics(f: dict) -> dict | None:
        auroc = aurocs.get((f["method"], f["class_index"], f["seed"]))
        return None if auroc is None else {"auroc": auroc, "auroc_val": auroc, "auroc_last": auroc - 0.05,
                                           "selected_epoch": 1, "epochs": 5, "auroc_best_test_optimistic": auroc + 0.01}

    return _fake_grid_dir(tmp_path, name, profile, metrics)


def test_verdict_per_class_where_the_paper_prints_classes_and_no_paper_number_for_baselines(tmp_path):
    from raygan.analysis.report import report
    from raygan.analysis.verdicts import verdict_rows
    from raygan.analysis.parquet import read_results

    # AGAD: class 0 over three seeds (sample SD 1.0), class 8 one seed (the pooled SD, 1.0, gives its SE);
    # Table 1 prints 99.9 for T-shirt and 100. for Bag
    study_dir = _fake_one_class_dir(tmp_path, {
        ("agad", 0, 0): 0.98, ("agad", 0, 1): 0.99, ("agad", 0, 2): 1.00, ("agad", 8, 0): 0.84,
        ("ganomaly", 0, 0): 0.90, ("ganomaly", 8, 0): 0.88,
    })
    info, rows = read_results(study_dir)
    entries = {(e["factors"][1], e["class"]): e for e in verdict_rows(info, rows, STUDIES.get("one_class"))}
    assert set(entries) == {("agad", "0"), ("agad", "8"), ("agad", "avg"), ("ganomaly", "avg")}
    t_shirt, bag, avg = entries["agad", "0"], entries["agad", "8"], entries["agad", "avg"]
    assert t_shirt["ours"] == pytest.approx(99.0) and t_shirt["sd"] == pytest.approx(1.0) and t_shirt["seeds"] == "3"
    assert t_shirt["paper"] == 99.9 and t_shirt["tolerance"] == pytest.approx(max(1.0, 2 / math.sqrt(3)))
    assert t_shirt["verdict"] == "reproduced" and t_shirt["optimistic"] == pytest.approx(100.0)
    assert bag["paper"] == 100.0 and bag["tolerance"] == pytest.approx(2.0) and bag["verdict"] == "not reproduced"
    # the average is compared with the paper's average over the same two classes, (99.9 + 100) / 2
    assert avg["ours"] == pytest.approx((99.0 + 84.0) / 2) and avg["paper"] == pytest.approx(99.95)
    assert avg["note"] == "paper averaged over the same 2 classes" and avg["seeds"] == "1-3"
    assert entries["ganomaly", "avg"]["verdict"] == "no paper number" and entries["ganomaly", "avg"]["paper"] is None
    csv_text = report(study_dir, "csv")
    assert "fashion_mnist,agad,8,84,,1,85,100,-16,2,not reproduced," in csv_text


def test_report_puts_the_papers_class_by_class_row_under_ours(tmp_path):
    """A backbones study directory with records as the Tune layer writes them (no training)."""
    from raygan.analysis.report import report
    from raygan.store.layout import STUDY_FILE
    from raygan.store.records import write_record

    study = STUDIES.get("backbones")
    profile = narrow_profile(study.profile("paper"), datasets=["cifar10"], classes=[0, 7], seeds=[0])
    trials = [t for t in expand(study, profile) if t.factors["backbone"] == "unet"]
    study_dir = tmp_path / "backbones"
    study_dir.mkdir()
    (study_dir / STUDY_FILE).write_text(json.dumps({
        "study": "backbones", "reproduces": study.reproduces, "profile": "paper", "study_hash": "h", "kind": "grid",
        "trials": len(trials), "rows": ["dataset", *study.row_factors], "trial_list": [t.as_dict() for t in trials]}))
    for t, auroc in zip(trials, (0.95, 0.80)):
        write_record(study_dir, {
            "study": "backbones", "study_hash": "h", "profile": "paper", "trial_key": t.key, "trial_id": t.key,
            "status": "finished", "error": None, "factors": t.factors, "config": t.config,
            "metrics": {"auroc": auroc, "auroc_val": auroc, "selected_epoch": 0, "epochs": 1},
            "history": [{"epoch": 0, "auroc_val": auroc, "auroc_test": auroc}],
            "node_id": "n", "hostname": "h", "recorded_at": 0.0,
        })
    table = report(study_dir)
    # ours: classes 0 and 7 at 95.0 and 80.0, avg 87.5; Table 9 CIFAR-10 UNet: 99.9 and 73.8, avg 92.5 ± 7.81
    assert "| cifar10 | unet | 95.0 | 80.0 | 87.5 | 7.5 | 92.5±7.8 | -5.0 |" in table
    assert "| ↳ paper |  | 99.9 | 73.8 | 92.5 | 7.8 |  |  |" in table
    assert "paper: papers/004 Table 9" in table
    header, row = report(study_dir, "csv").splitlines()[:2]
    assert header.endswith("delta,paper class 0,paper class 7") and row.endswith(",-5,99.9,73.8")


def test_hpo_confirm_trains_the_searched_agad_beside_ganomaly_on_one_class_splits():
    from conftest import SEARCHED

    study = STUDIES.get("hpo_confirm")
    trials = expand(study, study.profile("cpu"))
    assert sorted((t.factors["class_index"], t.factors["method"], t.factors["seed"]) for t in trials) == sorted(
        (c, m, s) for c in (2, 6, 8) for m in ("agad", "ganomaly") for s in (0, 1, 2))
    one_class = {t.key: t.config for t in expand(STUDIES.get("one_class"), STUDIES.get("one_class").profile("cpu"))}
    for t in trials:
        config = t.config
        assert config["data"]["class_index"] == t.factors["class_index"] and config["data"]["seed"] == t.factors["seed"]
        assert config["train"]["epochs"] == 5 and config["train"]["batch_size"] == 64  # the profile's budget
        if t.factors["method"] == "agad":  # the searched sections, not the search's class or epochs
            assert {k: config["model"][k] for k in SEARCHED["model"]} == SEARCHED["model"]
            assert {k: config["loss"][k] for k in SEARCHED["loss"]} == SEARCHED["loss"]
            assert config["train"]["lr"] == SEARCHED["train"]["lr"] and config["data"]["dataset"] == "fashion_mnist"
        else:  # GANomaly exactly as one_class cpu trains it: its seed-0 trials are the same runs
            key = f"fashion_mnist-c{t.factors['class_index']}-methodganomaly-s{t.factors['seed']}"
            if key in one_class:
                assert config == one_class[key]
            assert config["train"]["lr"] == 2e-4 and config["model"]["latent_size"] == 100


def test_hpo_confirm_says_which_search_config_it_needs(tmp_path, monkeypatch):
    study = STUDIES.get("hpo_confirm")
    monkeypatch.setenv("RAYGAN_CONFIRM_CONFIG", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"missing.json does not exist: run the search \(python studies/hpo.py "
                                          r"--profile cpu\) and export it .* or set RAYGAN_CONFIRM_CONFIG"):
        expand(study, study.profile("cpu"))
    (tmp_path / "bad.json").write_text('{"method": "agad", "model": {}}')
    monkeypatch.setenv("RAYGAN_CONFIRM_CONFIG", str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError, match=r"bad.json is not a search's best_config.json"):
        expand(study, study.profile("cpu"))
    (tmp_path / "gan.json").write_text(json.dumps({"method": "ganomaly", "model": {}, "loss": {}, "train": {"lr": 1}}))
    monkeypatch.setenv("RAYGAN_CONFIRM_CONFIG", str(tmp_path / "gan.json"))
    with pytest.raises(ConfigError, match=r"configures method 'ganomaly'; hpo_confirm confirms an AGAD search"):
        expand(study, study.profile("cpu"))
    monkeypatch.delenv("RAYGAN_CONFIRM_CONFIG")
    result = _study_script("hpo_confirm", "--profile", "paper", "--dry-run")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "results/hpo-paper/best_config.json does not exist" in result.stderr


def test_head_to_head_pairs_by_seed_and_calls_only_beyond_two_standard_errors_with_three_seeds(tmp_path):
    from raygan.analysis.report import report
    from raygan.analysis.verdicts import versus_rows
    from raygan.analysis.parquet import read_results

    # class 2: AGAD ahead by 2, 3, 4 points (mean 3, SE 1/sqrt(3) = 0.577): called; class 6: +1, -1, +0.5
    # (mean 0.167, SE 0.601): not separable; class 8: one seed only
    aurocs = {}
    for seed, (a2, a6) in enumerate([(0.92, 0.81), (0.93, 0.79), (0.94, 0.805)]):
        aurocs.update({("agad", 2, seed): a2, ("ganomaly", 2, seed): 0.90, ("agad", 6, seed): a6,
                       ("ganomaly", 6, seed): 0.80})
    aurocs.update({("agad", 8, 0): 0.95, ("ganomaly", 8, 0): 0.85})
    study_dir = _fake_one_class_dir(tmp_path, aurocs, name="hpo_confirm")
    info, rows = read_results(study_dir)
    entries = {e["cell"]["class_index"]: e for e in versus_rows(info, rows, ("method", "agad", "ganomaly"))}
    assert set(entries) == {2, 6, 8, "avg"}
    assert entries[2]["delta"] == pytest.approx(3.0) and entries[2]["se"] == pytest.approx(1 / math.sqrt(3))
    assert entries[2]["call"] == "agad better" and entries[2]["wins"] == 3 and entries[2]["pairs"] == 3
    assert entries[6]["delta"] == pytest.approx(0.5 / 3) and entries[6]["call"] == "not separable"
    assert entries[8]["delta"] == pytest.approx(10.0) and entries[8]["se"] is None
    assert entries[8]["call"] == "too few seeds (< 3)"
    # the average over classes: called only if every class has 3 seeds (class 8 has one)
    assert entries["avg"]["delta"] == pytest.approx((3.0 + 0.5 / 3 + 10.0) / 3)
    assert entries["avg"]["call"] == "too few seeds (< 3)" and entries["avg"]["wins"] == 6
    # reversing the order of the trials' records changes nothing (pairs are by seed, not by position)
    assert versus_rows(info, rows[::-1], ("method", "agad", "ganomaly")) == list(entries.values())
    table = report(study_dir)
    assert "| dataset | class | agad | ganomaly | Δ (agad − ganomaly) | SE | seeds | agad wins | call |" in table
    assert "| fashion_mnist | 2 | 93.0 | 90.0 | +3.0 | 0.6 | 3 | 3/3 | **agad better** |" in table
    assert "| fashion_mnist | 6 | 80.2 | 80.0 | +0.2 | 0.6 | 3 | 2/3 | not separable |" in table
    assert "fashion_mnist,8,95,85,10,,1,1,too few seeds (< 3)" in report(study_dir, "csv")


def _fake_grid_dir(tmp_path: Path, name: str, profile, metrics_of) -> Path:
    """A grid study's directory of the profile's trials, each recorded as finished with the metrics
    ``metrics_of(factors)`` gives (None: no record), as the Tune layer writes them; no training."""
    from raygan.store.layout import STUDY_FILE
    from raygan.store.records import write_record

    study = STUDIES.get(name)
    trials = [t for t in expand(study, profile) if metrics_of(t.factors) is not None]
    study_dir = tmp_path / name
    study_dir.mkdir(parents=True)
    (study_dir / STUDY_FILE).write_text(json.dumps({
        "study": name, "reproduces": study.reproduces, "profile": "cpu", "study_hash": "h", "kind": "grid",
        "trials": len(trials), "rows": ["dataset", *study.row_factors], "trial_list": [t.as_dict() for t in trials]}))
    for t in trials:
        write_record(study_dir, {
            "study": name, "study_hash": "h", "profile": "cpu", "trial_key": t.key, "trial_id": t.key,
            "status": "finished", "error": None, "factors": t.factors, "config": t.config,
            "metrics": metrics_of(t.factors), "history": [], "node_id": "n", "hostname": "h", "recorded_at": 0.0,
        })
    return study_dir


def _same_auroc_everywhere(auroc_of):
    """metrics_of for _fake_grid_dir: every AUROC of a trial the one ``auroc_of(factors)`` gives."""
    def metrics(f: dict) -> dict | None:
        auroc = auroc_of(f)
        return None if auroc is None else {"auroc": auroc, "auroc_val": auroc, "auroc_last": auroc,
                                           "selected_epoch": 1, "epochs": 5, "auroc_best_test_optimistic": auroc}
    return metrics


def test_table_5_comparisons_pair_by_class_and_seed_at_each_gamma_and_call_by_the_head_to_head_rule(tmp_path):
    from raygan.analysis.comparisons import comparison_rows
    from raygan.analysis.parquet import read_results
    from raygan.analysis.report import report

    study = STUDIES.get("bn_ablation")
    # Known truth over classes 1, 2 x seeds 0-2: AdvProp +5 points at γ .05 (seed noise ±0.5), Freeze
    # −10, AdvProp+Freeze ±2 around shared BN (no effect); at γ 0 AdvProp −0.2 ± 1 (within its noise).
    noise = {0: -1.0, 1: 0.0, 2: 1.0}

    def auroc(f: dict) -> float:
        n = noise[f["seed"]] * (1 + f["class_index"] / 10)
        shift = {(False, False): 0.0, (True, False): 5.0 + 0.5 * n if f["gamma"] else -0.2 + 1.0 * n,
                 (False, True): -10.0 + 0.5 * n, (True, True): 2.0 * n}[f["advprop"], f["freeze"]]
        return (85.0 + 3 * f["class_index"] + shift) / 100

    profile = narrow_profile(study.profile("cpu"), classes=[1, 2])
    study_dir = _fake_grid_dir(tmp_path, "bn_ablation", profile, _same_auroc_everywhere(auroc))
    info, rows = read_results(study_dir)
    found = {(c.a_label, e["group"]["gamma"]): e for c in study.comparisons for e in comparison_rows(info, rows, c)}
    assert set(found) == {("AdvProp", 0.0), ("AdvProp", 0.05), ("Freeze", 0.05), ("AdvProp+Freeze", 0.05)}
    advprop = found["AdvProp", 0.05]
    assert advprop["delta"] == pytest.approx(5.0) and advprop["call"] == "AdvProp better"
    assert (advprop["classes"], advprop["seeds"], advprop["pairs"], advprop["wins"]) == (2, 3, 6, 6)
    assert advprop["by_class"] == {1: pytest.approx(5.0), 2: pytest.approx(5.0)}
    # SE: per class stdev(±0.5·(1 + c/10)) / sqrt(3), combined over the two classes
    se = [0.5 * (1 + c / 10) / math.sqrt(3) for c in (1, 2)]
    assert advprop["se"] == pytest.approx(math.sqrt(se[0] ** 2 + se[1] ** 2) / 2)
    assert found["Freeze", 0.05]["delta"] == pytest.approx(-10.0) and found["Freeze", 0.05]["call"] == "shared BN better"
    assert found["AdvProp+Freeze", 0.05]["call"] == "not separable"
    assert found["AdvProp", 0.0]["delta"] == pytest.approx(-0.2) and found["AdvProp", 0.0]["call"] == "not separable"
    assert comparison_rows(info, rows[::-1], study.comparisons[0]) == comparison_rows(info, rows, study.comparisons[0])
    table = report(study_dir)
    assert "| comparison | dataset | gamma | A | B | Δ (A − B) | SE | classes × seeds | A wins | Δ by class | call |" in table
    assert "| AdvProp (A) vs shared BN (B) | fashion_mnist | 0.05 | 94.5 | 89.5 | +5.0 |" in table
    assert "**shared BN better**" in table

    # two seeds: the same differences are not called
    two_seeds = _fake_grid_dir(tmp_path / "two", "bn_ablation", profile,
                               _same_auroc_everywhere(lambda f: auroc(f) if f["seed"] < 2 else None))
    info, rows = read_results(two_seeds)
    assert {e["call"] for c in study.comparisons for e in comparison_rows(info, rows, c)} == {"too few seeds (< 3)"}


def test_a_comparison_must_set_factors_the_study_has():
    from raygan.study import Comparison

    bn = STUDIES.get("bn_ablation")
    with pytest.raises(ValueError, match="comparison AdvProp vs shared BN needs two different settings"):
        replace(bn, comparisons=(Comparison({"adv_prop": True}, {"adv_prop": False}, "AdvProp", "shared BN"),))
    with pytest.raises(ValueError, match="needs two different settings"):
        replace(bn, comparisons=(Comparison({"gamma": 0.5}, {"gamma": 0.0}, "AdvProp", "shared BN"),))
    assert all(s.comparisons for s in map(STUDIES.get, ("bn_ablation", "ca_ablation", "backbones", "supervision")))


def test_backbones_report_puts_each_generators_scoring_time_beside_the_papers(tmp_path):
    from raygan.analysis.parquet import read_results
    from raygan.analysis.report import report
    from raygan.store.layout import RECORDS_DIR as ROWS_DIR

    study = STUDIES.get("backbones")
    study_dir = _fake_grid_dir(tmp_path, "backbones", narrow_profile(study.profile("cpu"), classes=[1], seeds=[0, 1]),
                               _same_auroc_everywhere(lambda f: 0.9))
    assert "ms/image" not in report(study_dir)  # trials recorded before runs timed their scoring: no table
    ms = {"naive": (2.0, 0.2), "unet": (5.0, 0.8), "unetpp": (9.0, 2.4)}
    for path in (study_dir / ROWS_DIR).glob("*.json"):
        record = json.loads(path.read_text())
        b1, b256 = ms[record["factors"]["backbone"]]
        seed = record["factors"]["seed"]  # seed 1 twice as slow: the median of two is their mean
        record["metrics"].update(score_ms_per_image_b1=b1 * (1 + seed), score_ms_per_image_b256=b256 * (1 + seed))
        path.write_text(json.dumps(record))
    (study_dir / "results.parquet").unlink(missing_ok=True)
    table = report(study_dir)
    assert ("| backbone | ms/image, batch 1 | ms/image, batch 256 | × naive, batch 1 | × naive, batch 256 | trials timed "
            "| paper ms/image | paper × naive |") in table
    assert "| naive | 3 | 0.3 | 1.00 | 1.00 | 2 | 2.67 | 1.00 |" in table
    assert "| unetpp | 13.5 | 3.6 | 4.50 | 12.00 | 2 | 16.73 | 6.27 |" in table
