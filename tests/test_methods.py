"""Methods: every registered method trains and scores; AGAD's loss signs and BN routing."""

from __future__ import annotations

import copy

import pytest
import torch

from raygan.core.config import DataConfig, RunConfig
from raygan.core.errors import ConfigError
from raygan.data import build_split, load_dataset, split_tensors
from raygan.engine.evaluation import detection_metrics
from raygan.methods import METHODS, build_method
from raygan.models import RoutedBatchNorm2d, bn_route

SMALL_BACKBONE = {"agad": "naive", "skip_ganomaly": "unet", "autoencoder": "naive", "ganomaly": "ganomaly",
                  "imbalance_gan": "strided_unet"}
# Methods that refuse γ = 0 get labelled anomalies in every test that builds them.
NEEDS_ANOMALIES = {"imbalance_gan": {"anomaly_fraction": 0.2}}


def method_for(name: str, **sections) -> object:
    torch.manual_seed(0)
    values = {"method": name, "model": {"backbone": SMALL_BACKBONE.get(name), "latent_size": 16},
              "data": NEEDS_ANOMALIES.get(name, {}), **sections}
    return build_method(RunConfig.from_dict(values), channels=1, image_size=32)


@pytest.fixture(scope="module")
def digits_three():
    data = load_dataset("digits")
    split = build_split(data, DataConfig(dataset="digits", class_index=3, anomaly_fraction=0.2))
    return split_tensors(data, split)


def test_every_registered_method_has_a_small_backbone_in_this_test():
    assert set(METHODS) <= set(SMALL_BACKBONE), "add the new method to SMALL_BACKBONE"


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_and_scores(name, digits_three):
    method = method_for(name)
    x, y = digits_three.train_x[:40], digits_three.train_y[:40]
    terms = method.train_step(x, y)
    assert terms and all(torch.isfinite(v) for v in terms.values())
    assert "g_loss" in terms
    scores = method.score(digits_three.test_x[:20])
    assert scores.shape == (20,) and torch.isfinite(scores).all()
    # eval-mode scoring is per image: a score does not depend on the rest of the batch
    torch.testing.assert_close(method.score(digits_three.test_x[:5]), scores[:5], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS.names())
def test_state_dict_round_trip(name):
    a, b = method_for(name), method_for(name)
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    a.train_step(x, torch.zeros(8, dtype=torch.long))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.score(x), b.score(x))


def test_auroc_is_unchanged_when_the_test_set_is_shuffled(digits_three):
    method = method_for("agad")
    method.train_step(digits_three.train_x[:64], digits_three.train_y[:64])
    scores = method.score(digits_three.test_x)
    perm = torch.randperm(len(scores), generator=torch.Generator().manual_seed(1))
    shuffled = method.score(digits_three.test_x[perm])
    torch.testing.assert_close(shuffled, scores[perm])
    before = detection_metrics(scores, digits_three.test_y)["auroc"]
    after = detection_metrics(shuffled, digits_three.test_y[perm])["auroc"]
    assert abs(before - after) < 1e-12


def reconstruction_error(method, x):
    return float((x - method.reconstruct(x)).pow(2).mean())


@pytest.mark.parametrize("target,direction", [(0, "down"), (1, "up")])
def test_agad_steps_lower_normal_and_raise_anomaly_reconstruction_error(digits_three, target, direction):
    method = method_for("agad", train={"lr": 1e-3}, data={"anomaly_fraction": 0.2})
    pool = digits_three.train_x[digits_three.train_y == target][:32]
    before = reconstruction_error(method, pool)
    for _ in range(6):
        method.train_step(pool, torch.full((len(pool),), target))
    after = reconstruction_error(method, pool)
    assert (after < before) if direction == "down" else (after > before), (before, after)


def _bn_layers(module):
    return [m for m in module.modules() if isinstance(m, RoutedBatchNorm2d)]


def _main_stats(module):
    return [(m.main.running_mean.clone(), m.main.running_var.clone(), int(m.main.num_batches_tracked)) for m in _bn_layers(module)]


def test_freeze_keeps_true_anomalies_out_of_the_running_statistics():
    method = method_for("agad", model={"backbone": "naive", "latent_size": 16, "bn_strategy": "freeze"},
                        loss={"contextual_adversarial_weight": 0.0})
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    before = _main_stats(method.generator)
    method.train_step(x, torch.ones(16, dtype=torch.long))  # anomalies only
    for (m0, v0, n0), (m1, v1, n1) in zip(before, _main_stats(method.generator)):
        assert torch.equal(m0, m1) and torch.equal(v0, v1) and n0 == n1
    # but the anomalies still train G: the BN affine parameters moved
    method.train_step(x, torch.zeros(16, dtype=torch.long))  # normals update the statistics
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(before, _main_stats(method.generator)))


def test_shared_bn_lets_anomalies_move_the_running_statistics():
    method = method_for("agad", loss={"contextual_adversarial_weight": 0.0})
    before = _main_stats(method.generator)
    method.train_step(torch.rand(16, 1, 32, 32) * 2 - 1, torch.ones(16, dtype=torch.long))
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(before, _main_stats(method.generator)))


@pytest.mark.parametrize("strategy,main_updates,aux_updates", [("shared", 2, 0), ("advprop", 1, 1)])
def test_advprop_routes_the_pseudo_anomaly_pass_through_the_auxiliary_bn(strategy, main_updates, aux_updates):
    method = method_for("agad", model={"backbone": "naive", "latent_size": 16, "bn_strategy": strategy})
    method.train_step(torch.rand(16, 1, 32, 32) * 2 - 1, torch.zeros(16, dtype=torch.long))
    for layer in _bn_layers(method.generator):
        assert int(layer.main.num_batches_tracked) == main_updates  # x, plus x̂ when shared
        aux = int(layer.aux.num_batches_tracked) if layer.aux is not None else 0
        assert aux == aux_updates


def test_contextual_adversarial_weight_zero_skips_the_second_pass():
    method = method_for("agad", loss={"contextual_adversarial_weight": 0.0})
    terms = method.train_step(torch.rand(8, 1, 32, 32) * 2 - 1, torch.zeros(8, dtype=torch.long))
    assert "g_adcon_normal" not in terms
    assert all(int(layer.main.num_batches_tracked) == 1 for layer in _bn_layers(method.generator))


# W(d) of AGAD footnote 2 written out by hand, d = |x̂ − G(x̂)|₁ per image.
ADCON_WRAPS_BY_HAND = {
    "negative": lambda d: -d.mean(),  # eq. 8
    "reciprocal": lambda d: 1.0 / (d.mean() + 1e-6),
    "exp": lambda d: torch.exp(-d).mean(),
}


def _adcon_only_generator_grads(detach_in_step: bool, detach_by_hand: bool, wrap: str = "negative"):
    """G's gradient from AGAD's step, and from the same loss written out by hand, same weights."""
    only_adcon = {"adversarial_weight": 0.0, "contextual_weight": 0.0, "latent_weight": 0.0,
                  "detach_pseudo_anomaly": detach_in_step, "contextual_adversarial_wrap": wrap}
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    stepped = method_for("agad", loss=only_adcon)
    stepped.train_step(x, torch.zeros(8, dtype=torch.long))
    by_hand = method_for("agad", loss=only_adcon)
    g = by_hand.g_module
    assert by_hand.cfg.model.bn_strategy == "advprop"  # AGAD's default: x̂ takes the auxiliary BN
    with bn_route(g, "normal"):
        x_hat = g(x.contiguous(memory_format=by_hand.memory_format))
    with bn_route(g, "pseudo_anomaly"):
        second = g(x_hat.detach() if detach_by_hand else x_hat)
    (15.0 * ADCON_WRAPS_BY_HAND[wrap]((x_hat - second).abs().flatten(1).mean(1))).backward()  # λ_adcon = 15
    grads = lambda m: torch.cat([p.grad.flatten() for p in m.g_module.parameters() if p.grad is not None])
    return grads(stepped), grads(by_hand)


@pytest.mark.parametrize("detach", [True, False])
def test_detach_decides_whether_the_adcon_gradient_reaches_the_first_pass(detach):
    stepped, same_reading = _adcon_only_generator_grads(detach, detach_by_hand=detach)
    torch.testing.assert_close(stepped, same_reading, rtol=1e-4, atol=1e-7)
    _, other_reading = _adcon_only_generator_grads(detach, detach_by_hand=not detach)
    assert not torch.allclose(stepped, other_reading, rtol=1e-3, atol=1e-6)


def test_every_adcon_wrap_is_the_written_loss_and_pushes_the_pseudo_anomaly_error_up():
    from raygan.core.config import CONTEXTUAL_ADVERSARIAL_WRAPS

    assert set(CONTEXTUAL_ADVERSARIAL_WRAPS) == set(ADCON_WRAPS_BY_HAND)
    d = torch.tensor([0.2, 0.5], requires_grad=True)
    for wrap in CONTEXTUAL_ADVERSARIAL_WRAPS:
        stepped, by_hand = _adcon_only_generator_grads(True, detach_by_hand=True, wrap=wrap)
        torch.testing.assert_close(stepped, by_hand, rtol=1e-4, atol=1e-7)
        # decreasing W: minimising it raises the pseudo-anomaly's reconstruction error
        method = method_for("agad", loss={"contextual_adversarial_wrap": wrap})
        (grad,) = torch.autograd.grad(method._wrap_adcon(d), d)
        assert (grad < 0).all(), wrap


def test_discriminator_is_reinitialised_when_its_loss_collapses():
    method = method_for("agad", loss={"discriminator_reset_threshold": 1e9})  # any loss is "collapsed"
    d_before = [p.clone() for p in method.discriminator.parameters()]
    method.train_step(torch.rand(8, 1, 32, 32) * 2 - 1, torch.zeros(8, dtype=torch.long))
    assert method.discriminator_resets == 1
    assert not method.optimizer_d.state  # Adam moments of the old D are dropped
    assert any(not torch.equal(a, b) for a, b in zip(d_before, method.discriminator.parameters()))


@pytest.mark.parametrize(
    "values,message",
    [
        ({"method": "autoencoder", "loss": {"latent_weight": 1.0}}, "loss.latent_weight has no meaning for method autoencoder"),
        ({"method": "ganomaly", "model": {"backbone": "naive"}}, "use backbone 'ganomaly'"),
        ({"method": "autoencoder", "model": {"discriminator": "vgg"}}, "autoencoder has no discriminator"),
        ({"method": "agad", "model": {"backbone": "resnet"}}, "unknown generator 'resnet'"),
        ({"method": "agad", "loss": {"contextual_adversarial_wrap": "log"}}, "loss.contextual_adversarial_wrap must be one of"),
        ({"method": "ganomaly", "loss": {"contextual_adversarial_wrap": "exp"}}, "has no meaning for method ganomaly"),
        ({"method": "gan", "model": {}}, "unknown method 'gan'"),
        ({"method": "imbalance_gan"}, "imbalance_gan trains its anomaly discriminator"),
        ({"method": "imbalance_gan", "data": {"anomaly_fraction": 0.1}, "model": {"discriminator": "vgg"}},
         "needs image- and patch-level outputs"),
        ({"method": "imbalance_gan", "data": {"anomaly_fraction": 0.1}, "model": {"bn_strategy": "advprop"}},
         "no pseudo-anomaly pass"),
        ({"method": "agad", "loss": {"patch_adversarial_weight": 1.0}}, "loss.patch_adversarial_weight has no meaning for method agad"),
        ({"method": "imbalance_gan", "data": {"anomaly_fraction": 0.1}, "loss": {"latent_weight": 1.0}},
         "loss.latent_weight has no meaning for method imbalance_gan"),
        ({"method": "imbalance_gan", "loss": {"anomaly_adversarial_target": "true"}}, "anomaly_adversarial_target must be one of fake, real"),
    ],
)
def test_impossible_method_configs_are_named(values, message):
    from raygan.core.errors import RayganError

    with pytest.raises(RayganError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_method(RunConfig.from_dict(values), 1, 32)


def test_resolved_config_records_the_paper_defaults():
    method = method_for("agad")
    loss = method.cfg.loss
    assert (loss.adversarial_weight, loss.contextual_weight, loss.contextual_adversarial_weight, loss.latent_weight) == (1.0, 50.0, 15.0, 5.0)
    assert method_for("ganomaly").cfg.loss.contextual_weight == 50.0
    with pytest.raises(ConfigError):
        RunConfig.from_dict({"loss": {"contextual_weight": -1}})


def test_cpu_methods_use_fused_adam_and_keep_freed_memory():
    import platform

    from raygan.compute import allocator

    method = method_for("agad")
    assert all(opt.defaults["fused"] for opt in method.optimizers().values())
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and not allocator._configured_elsewhere():
        assert allocator.keep_freed_memory()  # idempotent: set once per process, reported after


# --- imbalance_gan (papers/003) ------------------------------------------------------------------


@pytest.mark.parametrize("target,direction", [(0, "down"), (1, "up")])
def test_imbalance_gan_steps_lower_normal_and_raise_anomaly_reconstruction_error(digits_three, target, direction):
    method = method_for("imbalance_gan", train={"lr": 1e-3}, data={"anomaly_fraction": 0.2})
    pool = digits_three.train_x[digits_three.train_y == target][:32]
    before = reconstruction_error(method, pool)
    for _ in range(6):
        terms = method.train_step(pool, torch.full((len(pool),), target))
    after = reconstruction_error(method, pool)
    assert (after < before) if direction == "down" else (after > before), (before, after)
    # only the part present in the batch is trained: its discriminator and its three G terms
    part = "normal" if target == 0 else "anomalous"
    assert {f"g_rec_{part}", f"g_adv_{part}", f"g_patch_{part}"} <= set(terms)
    assert not any(k.endswith("_anomalous" if target == 0 else "_normal") for k in terms)


def _verdict_loss(discriminator, real, fake) -> float:
    """The discriminator's own loss on real vs reconstructed images (image and patch outputs).

    In train mode, as the D step sees them: after a few steps BN's running statistics still lag."""
    import torch.nn.functional as F

    with torch.no_grad():
        loss = 0.0
        for images, label in ((real, 1.0), (fake, 0.0)):
            logit, patches, _ = discriminator.forward_with_patches(images)
            for out in (logit, patches):
                loss += float(F.binary_cross_entropy_with_logits(out, torch.full_like(out, label)))
    return loss / 2


def test_imbalance_gan_logs_six_generator_losses_and_both_discriminators_learn(digits_three):
    method = method_for("imbalance_gan")  # the paper lr 2e-4: Adam's first steps at 1e-3 overshoot
    x, y = digits_three.train_x[:64], digits_three.train_y[:64]
    assert 0 < int(y.sum()) < len(y)
    six = {f"g_{kind}_{part}" for kind in ("rec", "adv", "patch") for part in ("normal", "anomalous")}
    d_normal, d_anomaly = method.d_module, method.extra_d_modules["anomaly_discriminator"]
    x_n, x_a = x[y == 0], x[y == 1]
    for _ in range(4):
        # The reconstructions this step's D updates see: G in train mode on the batch, before G's step.
        with torch.no_grad():
            fake = method.g_module(torch.cat([x_n, x_a]))
        fake_n, fake_a = fake[: len(x_n)], fake[len(x_n):]
        before = _verdict_loss(d_normal, x_n, fake_n), _verdict_loss(d_anomaly, x_a, fake_a)
        terms = method.train_step(x, y)
        after = _verdict_loss(d_normal, x_n, fake_n), _verdict_loss(d_anomaly, x_a, fake_a)
        # each discriminator's step makes it better at telling its originals from these reconstructions
        assert after[0] < before[0] and after[1] < before[1], (before, after)
    assert six <= set(terms) and {"d_normal_loss", "d_anomaly_loss", "d_loss", "g_loss"} <= set(terms)
    # G helps D_A (anomaly_adversarial_target fake): it is past chance within these few steps
    chance = 2 * float(torch.log(torch.tensor(2.0)))  # BCE of an undecided D, image + patch
    assert float(terms["d_anomaly_loss"]) < chance


def test_imbalance_gan_anomaly_adversarial_target_sets_the_sign(digits_three):
    x = digits_three.train_x[digits_three.train_y == 1][:16]
    verdicts = {}
    for target in ("fake", "real"):
        method = method_for("imbalance_gan", loss={"anomaly_adversarial_target": target,
                                                   "anomaly_contextual_weight": 0.0,
                                                   "anomaly_patch_adversarial_weight": 0.0})
        d_anomaly = method.extra_d_modules["anomaly_discriminator"]
        before = copy.deepcopy(d_anomaly.state_dict())
        # One G step, then D_A as it was before the step (the step also trains D_A): both targets
        # are judged by the same D_A, and G moved its verdict on the reconstruction towards t.
        method.train_step(x, torch.ones(len(x), dtype=torch.long))
        d_anomaly.load_state_dict(before)
        d_anomaly.eval()
        with torch.no_grad():
            verdicts[target] = float(d_anomaly(method.reconstruct(x))[0].mean())
    assert verdicts["real"] > verdicts["fake"], verdicts
