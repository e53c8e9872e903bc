"""Every method's search space samples valid configurations (RunConfig.from_dict and the study's
own check), the same ones for the same seed, without training anything."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from raygan.core.config import RunConfig  # noqa: E402
from raygan.study import Profile, Study, apply_sampled, search_base, validated  # noqa: E402
from raygan.study.spaces import GANOMALY_LATENT_SIZES, SEARCH_SPACES  # noqa: E402

PROFILES = {
    "gamma 0": Profile(datasets=("digits",), classes={"digits": (3,)}, seeds=(0,), factors={}),
    "gamma .1": Profile(datasets=("digits",), classes={"digits": (3,)}, seeds=(0,),
                        overrides={"data": {"anomaly_fraction": 0.1}, "train": {"batch_size": 64}}),
}


def sampled_configs(method: str, profile: Profile, seed: int, n: int = 25) -> list[dict]:
    study = Study(name=f"{method}_search", reproduces="test", caption="", base={"method": method},
                  search_space=SEARCH_SPACES.get(method), profiles={"p": profile})
    base = search_base(study, profile)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ot = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(n):
        trial = ot.ask()
        constants = study.search_space(trial, profile) or {}
        config = apply_sampled(base.config, {**trial.params, **constants})
        RunConfig.from_dict(config)  # strict: an unknown or impossible key fails here
        configs.append(validated(config, f"trial {trial.number}"))
        ot.tell(trial, 0.5)
    return configs


def test_every_method_that_a_comparison_tunes_has_a_space():
    assert {"agad", "ganomaly", "autoencoder"} <= set(SEARCH_SPACES.names())


@pytest.mark.parametrize("method", SEARCH_SPACES.names())
@pytest.mark.parametrize("profile", PROFILES)
def test_a_space_samples_valid_configurations_the_same_for_the_same_seed(method, profile):
    configs = sampled_configs(method, PROFILES[profile], seed=7)
    assert configs == sampled_configs(method, PROFILES[profile], seed=7)
    assert configs != sampled_configs(method, PROFILES[profile], seed=8)
    assert all(c["method"] == method for c in configs)
    assert len({RunConfig.from_dict(c).stable_hash() for c in configs}) == len(configs)  # it does vary


def test_ganomaly_searches_latent_size_its_three_weights_and_the_learning_rate_in_papers_002s_ranges():
    configs = sampled_configs("ganomaly", PROFILES["gamma 0"], seed=0, n=60)
    assert {c["model"]["latent_size"] for c in configs} <= set(GANOMALY_LATENT_SIZES)
    for key in ("adversarial_weight", "contextual_weight", "latent_weight"):
        values = [c["loss"][key] for c in configs]
        assert all(1.0 <= v <= 100.0 for v in values) and max(values) / min(values) > 10  # log-uniform over 1-100
    assert all(5e-5 <= c["train"]["lr"] <= 2e-3 for c in configs)
    changed = {k for c in configs for k, v in c["loss"].items() if v != configs[0]["loss"][k]}
    assert changed == {"adversarial_weight", "contextual_weight", "latent_weight"}


def test_the_autoencoder_searches_latent_size_and_learning_rate_only():
    configs = sampled_configs("autoencoder", PROFILES["gamma 0"], seed=0)
    varied = {f"{section}.{k}" for c in configs for section in ("model", "loss", "train", "data")
              for k, v in c[section].items() if v != configs[0][section][k]}
    assert varied == {"model.latent_size", "train.lr"}
