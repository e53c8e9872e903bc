"""AGAD: Adversarial Generative Anomaly Detection (Shi & Zhang, papers/004).

The train step follows Algorithm 1. Per mini-batch (normals first, then labelled anomalies):

    x̂ = G(x), (ŷ_x, z) = D(x)           first pass
    x̂′ = G(x̂), (ŷ, ẑ) = D(x̂)           second pass: x̂ is a pseudo-anomaly
    normal:  L_g = λ_adv·l_adv(ŷ,1) + λ_con·|x − x̂|₁ + λ_adcon·W(|x̂ − x̂′|₁) + λ_lat·‖z − ẑ‖₂²
             L_d = l_adv(ŷ,0) + l_adv(ŷ_x,1)
    anomaly: L_g = λ_adv/l_adv(ŷ,0) + λ_adcon/|x̂ − x̂′|₁ + λ_lat/‖z − ẑ‖₂²   (each term: its mean
             over the anomaly part of the batch, then the reciprocal with ε; eq. 10)
             L_d = l_adv(ŷ_x,0)

Algorithm 1 writes the anomaly's contextual adversarial term as −λ_adcon/l_adcon with
l_adcon = −|x̂ − x̂′|₁ (eq. 8); that is +λ_adcon/|x̂ − x̂′|₁, computed here on the positive distance.
W is −d in eq. 8; footnote 2 allows any decreasing W (`loss.contextual_adversarial_wrap`:
negative, reciprocal 1/(d+ε), exp e^−d). Normal and anomaly parts are combined as the batch mean
of eq. 11 (each part weighted by its share of the batch). G is updated before D, as in Algorithm 1 (lines 12-13).

Batch norm (§6.2): under `freeze` the true anomalies pass G separately with the main BN's running
statistics; otherwise the whole batch passes G together. The second pass is routed as
"pseudo_anomaly" (the auxiliary BN under `advprop`).

Whether the contextual adversarial gradient flows back into the first pass is not stated by the
paper: `loss.detach_pseudo_anomaly` chooses (docs/methods.md: measured).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raygan.core.config import ModelConfig
from raygan.core.errors import ConfigError
from raygan.methods.base import METHODS, Method, Terms
from raygan.models import bn_route


@METHODS.register("agad")
class AGAD(Method):
    name = "agad"
    uses_labelled_anomalies = True
    default_backbone = "unetpp"  # AGAD §3.3.1 (MNIST: naive, Table 1 footnote)
    default_discriminator = "vgg"  # AGAD §3.3.1
    # §6.2: "we hereby deploy auxiliary batch norms for the generated pseudo-anomaly data". Also
    # measured (docs/methods.md, benchmarks/agad_variants.py): with shared BN the detached x̂ collapsed
    # F-MNIST T-shirt to 0.47 test AUROC by epoch 5; the auxiliary BN kept it at 0.89.
    default_bn_strategy = "advprop"
    default_weights = {  # AGAD §4.2
        "adversarial_weight": 1.0,
        "contextual_weight": 50.0,
        "contextual_adversarial_weight": 15.0,
        "latent_weight": 5.0,
        # Not in the paper. Measured (docs/methods.md, benchmarks/agad_variants.py): with x̂ detached the
        # F-MNIST validation AUROC was highest and did not decay late, unlike the gradient-flowing
        # variant; λ_adcon = 0 stays available as Table 4's "w/o".
        "detach_pseudo_anomaly": True,
        "contextual_adversarial_wrap": "negative",  # eq. 8
    }
    weight_names = tuple(default_weights)

    @classmethod
    def check_model(cls, model: ModelConfig) -> None:
        if model.discriminator is None:
            raise ConfigError("model.discriminator: agad needs a discriminator (vgg or dcgan)")

    def ddp_options(self) -> dict[str, dict]:
        options = super().ddp_options()
        # Without the pseudo-anomaly pass AdvProp's auxiliary BN never gets a gradient.
        if self.weight("contextual_adversarial_weight") == 0 and self.cfg.model.bn_strategy.startswith("advprop"):
            options["generator"]["find_unused_parameters"] = True
        return options

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        G, D = self.generator, self.discriminator
        assert D is not None
        x, y, n_normal = self.split_batch(x, y)  # normals first: parts are slices from here on
        n_anomalous = len(x) - n_normal
        share_n, share_a = n_normal / len(x), n_anomalous / len(x)

        # First pass.
        if n_anomalous and self.cfg.model.bn_strategy.endswith("freeze"):
            with bn_route(G, "normal"):
                x_hat_n = G(x[:n_normal]) if n_normal else x[:0]
            with bn_route(G, "anomaly"):
                x_hat_a = G(x[n_normal:])
            x_hat = torch.cat([x_hat_n, x_hat_a])
        else:
            with bn_route(G, "normal"):
                x_hat = G(x)
        adcon_dist = None
        # Second pass (skipped when the term is off: Table 4's "w/o").
        if self.weight("contextual_adversarial_weight") > 0:
            with bn_route(G, "pseudo_anomaly"):
                x_hat2 = G(x_hat.detach() if self.cfg.loss.detach_pseudo_anomaly else x_hat)
            adcon_dist = (x_hat - x_hat2).abs().flatten(1).mean(1)  # |x̂ − x̂′|₁ per image
        with self.discriminator_local():
            logit_real, z = D(x)
            logit_fake, z_hat = D(x_hat)
            latent_dist = (z.detach() - z_hat).pow(2).mean(1)  # D(x) does not depend on G
            loss_g, terms = self._generator_loss(x, x_hat, adcon_dist, logit_fake, latent_dist, n_normal)
            self.step_generator(loss_g)

        # D step: reuses D(x) (D's weights have not changed), fresh D(x̂) on the detached x̂; this
        # last forward is the synchronised one under DDP.
        logit_fake_d, _ = D(x_hat.detach())
        loss_d = x.new_zeros(())
        if n_normal:
            sl = slice(0, n_normal)
            loss_d = loss_d + share_n * (
                F.binary_cross_entropy_with_logits(logit_real[sl], torch.ones_like(logit_real[sl]))
                + F.binary_cross_entropy_with_logits(logit_fake_d[sl], torch.zeros_like(logit_fake_d[sl]))
            )
        if n_anomalous:
            sl = slice(n_normal, None)
            loss_d = loss_d + share_a * F.binary_cross_entropy_with_logits(
                logit_real[sl], torch.zeros_like(logit_real[sl])
            )
        self.step_discriminator(loss_d)
        terms["d_loss"] = loss_d
        return {k: v.detach() for k, v in terms.items()}

    def _generator_loss(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        adcon_dist: torch.Tensor | None,
        logit_fake: torch.Tensor,
        latent_dist: torch.Tensor,
        n_normal: int,
    ) -> tuple[torch.Tensor, Terms]:
        """Normality loss on rows [:n_normal], reciprocal anomaly loss on the rest (eq. 9-11)."""
        eps = self.cfg.loss.reciprocal_epsilon
        w_adv, w_con = self.weight("adversarial_weight"), self.weight("contextual_weight")
        w_adcon, w_lat = self.weight("contextual_adversarial_weight"), self.weight("latent_weight")
        n_anomalous = len(x) - n_normal
        terms: Terms = {}
        loss_g = x.new_zeros(())
        if n_normal:
            sl = slice(0, n_normal)
            adv_n = F.binary_cross_entropy_with_logits(logit_fake[sl], torch.ones_like(logit_fake[sl]))
            con_n = (x[sl] - x_hat[sl]).abs().mean()
            lat_n = latent_dist[sl].mean()
            loss_n = w_adv * adv_n + w_con * con_n + w_lat * lat_n
            terms.update(g_adv_normal=adv_n, g_con_normal=con_n, g_lat_normal=lat_n)
            if adcon_dist is not None:
                adcon_n = self._wrap_adcon(adcon_dist[sl])
                loss_n = loss_n + w_adcon * adcon_n
                terms["g_adcon_normal"] = adcon_n
            loss_g = loss_g + n_normal / len(x) * loss_n
        if n_anomalous:
            sl = slice(n_normal, None)
            adv_a = F.binary_cross_entropy_with_logits(logit_fake[sl], torch.zeros_like(logit_fake[sl]))
            lat_a = latent_dist[sl].mean()
            loss_a = w_adv / (adv_a + eps) + w_lat / (lat_a + eps)
            terms.update(g_adv_anomalous=adv_a, g_lat_anomalous=lat_a)
            if adcon_dist is not None:
                adcon_a = adcon_dist[sl].mean()
                loss_a = loss_a + w_adcon / (adcon_a + eps)
                terms["g_adcon_anomalous"] = adcon_a
            terms["g_anomaly_loss"] = loss_a
            loss_g = loss_g + n_anomalous / len(x) * loss_a
        terms["g_loss"] = loss_g
        return loss_g, terms

    def _wrap_adcon(self, dist: torch.Tensor) -> torch.Tensor:
        """W(d) of footnote 2, minimised: decreasing in the pseudo-anomaly's reconstruction error d."""
        wrap = self.cfg.loss.contextual_adversarial_wrap
        if wrap == "negative":  # eq. 8: unbounded below, G gains by driving d to its maximum
            return -dist.mean()
        if wrap == "reciprocal":  # as the anomaly loss (eq. 10): the pull fades as d grows
            return 1.0 / (dist.mean() + self.cfg.loss.reciprocal_epsilon)
        return torch.exp(-dist).mean()
