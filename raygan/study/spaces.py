"""Optuna search spaces, one per method, so that every method of a comparison can be tuned.

A space is define-by-run, ``space(trial, profile) -> {name: constant} | None``: sampled names with a
dot are config keys (``loss.latent_weight``), the others only steer the space; returned constants
join the trial's config. Nothing here imports Optuna or Ray: the trial is whatever asks
(`OptunaSearch`, an ``optuna.Trial``).
"""

from __future__ import annotations

from raygan.core.config import CONTEXTUAL_ADVERSARIAL_WRAPS
from raygan.core.registry import Registry

SEARCH_SPACES: Registry = Registry("search space")

# GANomaly's ablations (papers/002 (a), (b)): the notes give the argmax only (|z| = 100, weights
# 1/50/1), not the values tried; these bracket it as raygan's latent_size and ganomaly_weights
# studies do (|z| 8-256 on a log scale, each weight 1-100).
GANOMALY_LATENT_SIZES = (8, 16, 32, 64, 100, 128, 256)
GANOMALY_WEIGHT_RANGE = (1.0, 100.0)
# Learning rates around the papers' 2e-4 (AGAD §4.2, GANomaly's DCGAN setting), for every method.
LR_RANGE = (5e-5, 2e-3)


@SEARCH_SPACES.register("agad")
def agad_space(trial, profile) -> dict | None:
    """AGAD: latent size, backbone, λ_adv, λ_con, λ_lat, learning rate, and, only with the
    contextual adversarial term, λ_adcon, the detach choice, the wrap W and the BN strategy."""
    trial.suggest_categorical("model.latent_size", [50, 100, 200])
    trial.suggest_categorical("model.backbone", list(profile.factors.get("backbone", ("naive", "unet", "unetpp"))))
    trial.suggest_float("loss.adversarial_weight", 0.1, 10.0, log=True)  # AGAD §4.2: 1
    trial.suggest_float("loss.contextual_weight", 5.0, 200.0, log=True)  # 50
    trial.suggest_float("loss.latent_weight", 0.1, 50.0, log=True)  # 5
    trial.suggest_float("train.lr", *LR_RANGE, log=True)  # AGAD §4.2: 2e-4
    gamma = profile.overrides.get("data", {}).get("anomaly_fraction", 0.0)
    strategies = ["shared", "advprop", "freeze", "advprop+freeze"] if gamma > 0 else ["shared", "advprop"]
    # Conditional: λ_adcon, the detach choice and AdvProp exist only with the contextual
    # adversarial term (AdvProp's auxiliary BN normalises only the pseudo-anomalies x̂ it makes).
    if trial.suggest_categorical("contextual_adversarial", [True, False]):
        trial.suggest_float("loss.contextual_adversarial_weight", 0.5, 50.0, log=True)  # 15
        trial.suggest_categorical("loss.detach_pseudo_anomaly", [True, False])
        trial.suggest_categorical("loss.contextual_adversarial_wrap", list(CONTEXTUAL_ADVERSARIAL_WRAPS))  # footnote 2
        trial.suggest_categorical("model.bn_strategy", strategies)
        return None
    frozen = gamma > 0 and trial.suggest_categorical("freeze_without_adcon", [False, True])
    return {"loss.contextual_adversarial_weight": 0.0, "model.bn_strategy": "freeze" if frozen else "shared"}


@SEARCH_SPACES.register("ganomaly")
def ganomaly_space(trial, profile) -> dict | None:
    """GANomaly: latent size, w_adv, w_con, w_enc and learning rate (papers/002's ablations)."""
    trial.suggest_categorical("model.latent_size", list(GANOMALY_LATENT_SIZES))  # papers/002 (a): 100
    trial.suggest_float("loss.adversarial_weight", *GANOMALY_WEIGHT_RANGE, log=True)  # (b): w_adv 1
    trial.suggest_float("loss.contextual_weight", *GANOMALY_WEIGHT_RANGE, log=True)  # w_con 50
    trial.suggest_float("loss.latent_weight", *GANOMALY_WEIGHT_RANGE, log=True)  # w_enc 1
    trial.suggest_float("train.lr", *LR_RANGE, log=True)  # 2e-4
    return None


@SEARCH_SPACES.register("autoencoder")
def autoencoder_space(trial, profile) -> dict | None:
    """The autoencoder baseline: latent size and learning rate (it has no loss weights)."""
    trial.suggest_categorical("model.latent_size", list(GANOMALY_LATENT_SIZES))
    trial.suggest_float("train.lr", *LR_RANGE, log=True)
    return None
