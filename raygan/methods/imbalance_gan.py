"""The two-discriminator GAN of papers/003 (Kim et al. 2020, "GAN-based Anomaly Detection in
Imbalance Problems", as re-implemented on Fashion-MNIST by Ferrari & Enneifer).

A U-Net generator (`strided_unet`: 4 strided convolutions down, 4 up-convolutions) reconstructs
normal images faithfully and labelled anomalies badly. Two discriminators of the same architecture
(`patch`: an image-level and a patch-level real/fake output) judge original against reconstructed
images: D_N on normal images, D_A on anomalies. Per mini-batch (normals first, then anomalies),
x̂ = G(x):

    normal:  L_G,n = λ_con·|x − x̂|₁ + λ_adv·l(D_N(x̂), real) + λ_patch·l(D_N^patch(x̂), real)
    anomaly: L_G,a = λ_acon/(|x − x̂|₁ + ε) + λ_aadv·l(D_A(x̂), t) + λ_apatch·l(D_A^patch(x̂), t)
    D_N: l(D_N(x), real) + l(D_N(x̂), fake), image and patch outputs alike (on normals)
    D_A: the same on anomalies

with l the binary cross-entropy on logits (a patch term averages over the 8×8 patches). These
are the poster's six generator losses and one loss per discriminator; each is logged by name.
The two parts are combined as the batch mean (each weighted by its share of the batch), as in
AGAD eq. 11. The anomaly score is ‖x − G(x)‖₂.

What the poster leaves open, and what is chosen here (each a config field):
- how "reconstructs anomalies badly" becomes a loss: the reciprocal of the anomalies' mean L1
  error, λ/(l + ε), as AGAD's anomaly loss (eq. 10) does for its terms; it is bounded and its
  push fades as the error grows (`loss.anomaly_contextual_weight`, `loss.reciprocal_epsilon`);
- the verdict t that G seeks from D_A on reconstructed anomalies (`loss.anomaly_adversarial_target`):
  "fake" (default) makes the reconstruction of an anomaly look unlike that anomaly, which serves
  detection; "real" is the usual GAN sign (G fools D_A), which would pull the reconstruction
  towards a realistic anomaly;
- the weights: λ_con 50 (the L1 weight of GANomaly and AGAD), every other λ 1, λ_acon 5;
- the architectures' widths, kernels and the 8×8 patch grid (raygan.models).

Labelled anomalies are required (γ > 0): at γ = 0 there is nothing to train D_A or the anomaly
terms on, and the method would be a U-Net GAN that copies its input, so configuration resolution
stops with an error. Batch norm: `shared`, or `freeze` (the anomalies pass G separately with the
running statistics); AdvProp's auxiliary BN needs a pseudo-anomaly pass, which this method has
not, so it is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raygan.core.config import ModelConfig, RunConfig
from raygan.core.errors import ConfigError, RayganError
from raygan.methods.base import METHODS, Method, Terms
from raygan.models import bn_route


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


@METHODS.register("imbalance_gan")
class ImbalanceGAN(Method):
    name = "imbalance_gan"
    uses_labelled_anomalies = True
    default_backbone = "strided_unet"  # papers/003: U-Net with strided convolutions, 4 down, 4 up
    default_discriminator = "patch"  # papers/003: image-level and patch-level outputs
    default_weights = {
        "contextual_weight": 50.0,  # GANomaly/AGAD's L1 weight; the poster gives no values
        "adversarial_weight": 1.0,
        "patch_adversarial_weight": 1.0,
        # Ours: with 5, 1/(l + ε) weighs about as much as 50·l on normals when l ≈ 0.3.
        "anomaly_contextual_weight": 5.0,
        "anomaly_adversarial_weight": 1.0,
        "anomaly_patch_adversarial_weight": 1.0,
        "anomaly_adversarial_target": "fake",
    }
    weight_names = tuple(default_weights)
    extra_discriminators = ("anomaly_discriminator",)

    @classmethod
    def resolve(cls, cfg: RunConfig) -> RunConfig:
        if cfg.data.anomaly_fraction <= 0:
            raise ConfigError(
                "data.anomaly_fraction: imbalance_gan trains its anomaly discriminator and anomaly losses on "
                "labelled anomalies (papers/003); set gamma > 0 (e.g. --gamma 0.1)"
            )
        return super().resolve(cfg)

    @classmethod
    def check_model(cls, model: ModelConfig) -> None:
        if model.discriminator != "patch":
            raise ConfigError(
                f"model.discriminator {model.discriminator!r}: imbalance_gan needs image- and patch-level "
                f"outputs; use discriminator 'patch'"
            )
        if model.bn_strategy.startswith("advprop"):
            raise ConfigError(
                f"model.bn_strategy {model.bn_strategy!r}: imbalance_gan has no pseudo-anomaly pass for "
                f"AdvProp's auxiliary BN; use shared or freeze"
            )

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        G, D_N = self.generator, self.discriminator
        D_A = self.extra_d_wrapped["anomaly_discriminator"]
        x, y, n_normal = self.split_batch(x, y)  # normals first: parts are slices from here on
        n_anomalous = len(x) - n_normal
        if self.distributed is not None and not (n_normal and n_anomalous):
            # Each discriminator's synchronised pass must run on every worker, or DDP waits forever.
            raise RayganError(
                f"imbalance_gan under DDP needs normal and anomalous images in every worker's share of a "
                f"batch; got {n_normal} and {n_anomalous}. Use gamma > 0 and a larger train.batch_size"
            )
        x_n, x_a = x[:n_normal], x[n_normal:]
        if n_anomalous and self.cfg.model.bn_strategy == "freeze":
            with bn_route(G, "normal"):
                x_hat_n = G(x_n) if n_normal else x_n
            with bn_route(G, "anomaly"):
                x_hat_a = G(x_a)
        else:
            x_hat = G(x)
            x_hat_n, x_hat_a = x_hat[:n_normal], x_hat[n_normal:]

        terms: Terms = {}
        loss_g = x.new_zeros(())
        real_verdicts = {}
        with self.discriminator_local():
            if n_normal:
                # D(x) does not depend on G; computed here, it serves the D step below.
                real_verdicts["normal"] = D_N(x_n, return_patches=True)[:2]
                logit, patches, _ = D_N(x_hat_n, return_patches=True)
                parts = {
                    "g_rec_normal": (x_n - x_hat_n).abs().mean(),
                    "g_adv_normal": _bce(logit, real=True),
                    "g_patch_normal": _bce(patches, real=True),
                }
                loss_n = (self.weight("contextual_weight") * parts["g_rec_normal"]
                          + self.weight("adversarial_weight") * parts["g_adv_normal"]
                          + self.weight("patch_adversarial_weight") * parts["g_patch_normal"])
                terms.update(parts, g_normal_loss=loss_n)
                loss_g = loss_g + n_normal / len(x) * loss_n
            if n_anomalous:
                real_verdicts["anomaly"] = D_A(x_a, return_patches=True)[:2]
                logit, patches, _ = D_A(x_hat_a, return_patches=True)
                seek_real = self.cfg.loss.anomaly_adversarial_target == "real"
                parts = {
                    "g_rec_anomalous": (x_a - x_hat_a).abs().mean(),
                    "g_adv_anomalous": _bce(logit, real=seek_real),
                    "g_patch_anomalous": _bce(patches, real=seek_real),
                }
                loss_a = (self.weight("anomaly_contextual_weight")
                          / (parts["g_rec_anomalous"] + self.cfg.loss.reciprocal_epsilon)
                          + self.weight("anomaly_adversarial_weight") * parts["g_adv_anomalous"]
                          + self.weight("anomaly_patch_adversarial_weight") * parts["g_patch_anomalous"])
                terms.update(parts, g_anomaly_loss=loss_a)
                loss_g = loss_g + n_anomalous / len(x) * loss_a
            self.step_generator(loss_g)
        terms["g_loss"] = loss_g

        # D steps: the synchronised pass of each discriminator is the one on the detached x̂.
        d_total = x.new_zeros(())
        for part, name, wrapped, fake in (
            ("normal", "discriminator", D_N, x_hat_n),
            ("anomaly", "anomaly_discriminator", D_A, x_hat_a),
        ):
            if part not in real_verdicts:
                continue
            real_logit, real_patches = real_verdicts[part]
            fake_logit, fake_patches, _ = wrapped(fake.detach(), return_patches=True)
            loss_d = (_bce(real_logit, True) + _bce(fake_logit, False)
                      + _bce(real_patches, True) + _bce(fake_patches, False)) / 2
            self.step_discriminator(loss_d, name)
            terms[f"d_{part}_loss"] = loss_d
            d_total = d_total + loss_d
        terms["d_loss"] = d_total
        return {k: v.detach() for k, v in terms.items()}
