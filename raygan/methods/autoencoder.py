"""The plain reconstruction baseline (papers/003 reports 0.8758 AUROC on Fashion-MNIST)."""

from __future__ import annotations

import torch

from raygan.methods.base import METHODS, Method, Terms


@METHODS.register("autoencoder")
class Autoencoder(Method):
    """The generator alone, trained with the L1 reconstruction loss; score ‖x − G(x)‖₂."""

    name = "autoencoder"
    default_backbone = "naive"
    default_discriminator = None
    default_weights: dict = {}
    weight_names = ()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        x = self.prepare(x)
        loss = (x - self.generator(x)).abs().mean()
        self.step_generator(loss)
        return {"g_con": loss.detach(), "g_loss": loss.detach()}
