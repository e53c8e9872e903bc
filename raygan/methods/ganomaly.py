"""GANomaly (Akcay et al. 2018, papers/002) and Skip-GANomaly (Akcay et al. 2019).

Both are semi-supervised: trained on normal images only, labelled anomalies are never seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raygan.core.config import ModelConfig
from raygan.core.errors import ConfigError
from raygan.methods.base import METHODS, Method, Terms


def _discriminator_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (
        F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
        + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    )


class _GanomalyFamily(Method):
    """The step both GANomaly variants share: weighted G terms, then D on real vs detached fake."""

    @classmethod
    def check_model(cls, model: ModelConfig) -> None:
        if model.discriminator is None:
            raise ConfigError(f"model.discriminator: {cls.name} needs a discriminator")

    def generator_terms(self, x, x_hat, extra, logit_fake, feat_real, feat_fake) -> dict[str, torch.Tensor]:
        """Unweighted G terms keyed by the name of their weight (``adversarial_weight``, ...)."""
        raise NotImplementedError

    def adversarial_step(self, x: torch.Tensor, x_hat: torch.Tensor, extra, names: dict[str, str]) -> Terms:
        D = self.discriminator
        with self.discriminator_local():
            logit_real, feat_real = D(x)
            logit_fake, feat_fake = D(x_hat)
            terms = self.generator_terms(x, x_hat, extra, logit_fake, feat_real.detach(), feat_fake)
            loss_g = sum(self.weight(weight) * term for weight, term in terms.items())
            self.step_generator(loss_g)
        logit_fake_d, _ = D(x_hat.detach())
        loss_d = _discriminator_loss(logit_real, logit_fake_d)
        self.step_discriminator(loss_d)
        named = {names[weight]: term for weight, term in terms.items()}
        return {k: v.detach() for k, v in {**named, "g_loss": loss_g, "d_loss": loss_d}.items()}


@METHODS.register("ganomaly")
class GANomaly(_GanomalyFamily):
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
        super().check_model(model)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        x = self.prepare(x)
        x_hat, z, z_hat = self.generator(x, return_latents=True)
        names = {"adversarial_weight": "g_adv", "contextual_weight": "g_con", "latent_weight": "g_enc"}
        return self.adversarial_step(x, x_hat, (z, z_hat), names)

    def generator_terms(self, x, x_hat, latents, logit_fake, feat_real, feat_fake):
        z, z_hat = latents
        return {
            "adversarial_weight": (feat_real - feat_fake).pow(2).mean(),  # feature matching
            "contextual_weight": (x - x_hat).abs().mean(),
            "latent_weight": (z - z_hat).pow(2).mean(),
        }

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        # papers/002 §3.3 uses the L1 distance; the official code the mean squared one.
        _, z, z_hat = self.g_module(x, return_latents=True)
        return (z - z_hat).abs().mean(1)


@METHODS.register("skip_ganomaly")
class SkipGANomaly(_GanomalyFamily):
    """UNet generator with GANomaly-style training: L_adv (BCE on D(x̂)), L_con (L1), L_lat (L2 on
    D's features); weights 1/40/1 (Akcay et al. 2019); score 0.9·‖x − x̂‖² + 0.1·‖f(x) − f(x̂)‖².
    """

    name = "skip_ganomaly"
    default_backbone = "unet"
    default_discriminator = "dcgan"
    default_weights = {"adversarial_weight": 1.0, "contextual_weight": 40.0, "latent_weight": 1.0}
    weight_names = tuple(default_weights)
    score_mix = 0.9  # Skip-GANomaly's λ between reconstruction and latent error

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        x = self.prepare(x)
        names = {"adversarial_weight": "g_adv", "contextual_weight": "g_con", "latent_weight": "g_lat"}
        return self.adversarial_step(x, self.generator(x), None, names)

    def generator_terms(self, x, x_hat, extra, logit_fake, feat_real, feat_fake):
        return {
            "adversarial_weight": F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake)),
            "contextual_weight": (x - x_hat).abs().mean(),
            "latent_weight": (feat_real - feat_fake).pow(2).mean(),
        }

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.g_module(x)
        _, feat_real = self.d_module(x)
        _, feat_fake = self.d_module(x_hat)
        reconstruction = (x - x_hat).flatten(1).pow(2).mean(1)
        latent = (feat_real - feat_fake).pow(2).mean(1)
        return self.score_mix * reconstruction + (1 - self.score_mix) * latent
