"""GANomaly (Akcay et al. 2018, papers/002) and Skip-GANomaly (Akcay et al. 2019).

Both are semi-supervised: trained on normal images only, labelled anomalies are never seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raygan.config import ModelConfig
from raygan.errors import ConfigError
from raygan.methods.base import METHODS, Method, Terms


def _discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (
        F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
        + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    )


@METHODS.register("ganomaly")
class GANomaly(Method):
    """Encoder-decoder-encoder G; losses L_adv (feature matching on D's features, L2), L_con (L1),
    L_enc (L2 between G_E(x) and E(G(x))); weights 1/50/1; score ‖G_E(x) − E(G(x))‖₁ (papers/002).
    """

    name = "ganomaly"
    default_backbone = "ganomaly"
    default_discriminator = "dcgan"
    default_weights = {"adversarial_weight": 1.0, "contextual_weight": 50.0, "latent_weight": 1.0}
    weight_names = tuple(default_weights)

    @classmethod
    def check_model(cls, model: ModelConfig) -> None:
        if model.backbone != "ganomaly":
            raise ConfigError(
                f"model.backbone {model.backbone!r}: ganomaly scores with the latents of its "
                f"encoder-decoder-encoder generator; use backbone 'ganomaly'"
            )
        if model.discriminator is None:
            raise ConfigError("model.discriminator: ganomaly needs a discriminator")

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        G, D = self.generator, self.discriminator
        x = self.prepare(x)
        x_hat, z, z_hat = G(x, return_latents=True)
        with self.discriminator_local():
            logit_real, feat_real = D(x)
            _, feat_fake = D(x_hat)
            adv = (feat_real.detach() - feat_fake).pow(2).mean()
            con = (x - x_hat).abs().mean()
            enc = (z - z_hat).pow(2).mean()
            loss_g = (
                self.weight("adversarial_weight") * adv
                + self.weight("contextual_weight") * con
                + self.weight("latent_weight") * enc
            )
            self.step_generator(loss_g)
        logit_fake, _ = D(x_hat.detach())
        loss_d = _discriminator_loss(logit_real, logit_fake)
        self.step_discriminator(loss_d)
        terms = {"g_adv": adv, "g_con": con, "g_enc": enc, "g_loss": loss_g, "d_loss": loss_d}
        return {k: v.detach() for k, v in terms.items()}

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        # papers/002 §3.3 uses the L1 distance; the official code the mean squared one.
        _, z, z_hat = self.g_module(x, return_latents=True)
        return (z - z_hat).abs().mean(1)


@METHODS.register("skip_ganomaly")
class SkipGANomaly(Method):
    """UNet generator with GANomaly-style training: L_adv (BCE on D(x̂)), L_con (L1), L_lat (L2 on
    D's features); weights 1/40/1 (Akcay et al. 2019); score 0.9·‖x − x̂‖² + 0.1·‖f(x) − f(x̂)‖².
    """

    name = "skip_ganomaly"
    default_backbone = "unet"
    default_discriminator = "dcgan"
    default_weights = {"adversarial_weight": 1.0, "contextual_weight": 40.0, "latent_weight": 1.0}
    weight_names = tuple(default_weights)
    score_mix = 0.9  # Skip-GANomaly's λ between reconstruction and latent error

    @classmethod
    def check_model(cls, model: ModelConfig) -> None:
        if model.discriminator is None:
            raise ConfigError("model.discriminator: skip_ganomaly needs a discriminator")

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        G, D = self.generator, self.discriminator
        x = self.prepare(x)
        x_hat = G(x)
        with self.discriminator_local():
            logit_real, feat_real = D(x)
            logit_fake, feat_fake = D(x_hat)
            adv = F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))
            con = (x - x_hat).abs().mean()
            lat = (feat_real.detach() - feat_fake).pow(2).mean()
            loss_g = (
                self.weight("adversarial_weight") * adv
                + self.weight("contextual_weight") * con
                + self.weight("latent_weight") * lat
            )
            self.step_generator(loss_g)
        logit_fake_d, _ = D(x_hat.detach())
        loss_d = _discriminator_loss(logit_real, logit_fake_d)
        self.step_discriminator(loss_d)
        terms = {"g_adv": adv, "g_con": con, "g_lat": lat, "g_loss": loss_g, "d_loss": loss_d}
        return {k: v.detach() for k, v in terms.items()}

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.g_module(x)
        _, feat_real = self.d_module(x)
        _, feat_fake = self.d_module(x_hat)
        reconstruction = (x - x_hat).flatten(1).pow(2).mean(1)
        latent = (feat_real - feat_fake).pow(2).mean(1)
        return self.score_mix * reconstruction + (1 - self.score_mix) * latent
