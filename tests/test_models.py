"""Model layer: every registered backbone under every BN strategy, Table 8, init, BN routing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from raygan.core.errors import ConfigError, RayganError
from raygan.models import (
    BN_STRATEGIES,
    DISCRIMINATORS,
    GENERATORS,
    ROUTES,
    RoutedBatchNorm2d,
    bn_route,
    build_discriminator,
    build_generator,
    count_parameters,
    dcgan_init,
    norm_factory,
)

# AGAD Table 8, single-channel 32x32 input, latent size 100.
TABLE_8_PARAMETERS = {"naive": 2.04e6, "unet": 7.76e6, "unetpp": 9.04e6}


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    torch.manual_seed(0)
    # On a shared 2-core machine, two intra-op threads competing with another process spin-wait
    # and run these small convolutions up to 20x slower; one thread keeps the file fast everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(batch: int, channels: int, size: int) -> torch.Tensor:
    return torch.rand(batch, channels, size, size) * 2 - 1


def _generator_loss(generator: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Generators that expose latents (GANomaly) are exercised through them, so that the
    # re-encoder is part of the graph and every parameter must receive a gradient.
    if hasattr(generator, "forward_with_latents"):
        x_hat, z, z_hat = generator.forward_with_latents(x)
        return x_hat, (x_hat - x).square().mean() + (z - z_hat).square().mean()
    x_hat = generator(x)
    return x_hat, (x_hat - x).square().mean()


def _assert_every_parameter_learns(model: nn.Module) -> None:
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# --- generators ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", BN_STRATEGIES.names())
@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_forward_backward_under_every_bn_strategy(name: str, strategy: str) -> None:
    generator = build_generator(
        name, channels=1, image_size=32, latent_size=100, bn_strategy=strategy
    )
    generator.train()
    x = _images(4, 1, 32)

    # One pass per route, so auxiliary and frozen paths are in the graph too.
    total_loss = torch.zeros(())
    for route in ROUTES:
        with bn_route(generator, route):
            x_hat, loss = _generator_loss(generator, x)
        assert x_hat.shape == x.shape
        assert torch.isfinite(x_hat).all()
        assert x_hat.min() >= -1 and x_hat.max() <= 1
        total_loss = total_loss + loss
    total_loss.backward()

    assert torch.isfinite(total_loss)
    _assert_every_parameter_learns(generator)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", [64, 128])
@pytest.mark.parametrize("name", GENERATORS.names())
def test_generator_larger_images_and_colour(name: str, image_size: int, channels: int) -> None:
    generator = build_generator(name, channels=channels, image_size=image_size)
    x = _images(2, channels, image_size)
    with torch.no_grad():
        x_hat = generator(x)
    assert x_hat.shape == x.shape
    assert torch.isfinite(x_hat).all()
    assert x_hat.min() >= -1 and x_hat.max() <= 1


@pytest.mark.parametrize("name", sorted(TABLE_8_PARAMETERS))
def test_generator_parameter_counts_match_agad_table_8(name: str) -> None:
    generator = build_generator(name, channels=1, image_size=32, latent_size=100)
    assert count_parameters(generator) == pytest.approx(TABLE_8_PARAMETERS[name], rel=0.15)


def test_ganomaly_generator_returns_latents() -> None:
    generator = build_generator("ganomaly", channels=3, image_size=32, latent_size=64)
    x = _images(4, 3, 32)
    x_hat, z, z_hat = generator.forward_with_latents(x)
    assert x_hat.shape == x.shape
    assert z.shape == (4, 64) and z_hat.shape == (4, 64)

    # The plain forward returns the same reconstruction (eval mode: no BN batch-stat noise).
    generator.eval()
    with torch.no_grad():
        reconstruction = generator(x)
        same, _, _ = generator(x, return_latents=True)
    assert torch.equal(reconstruction, same)


def test_strided_unet_has_four_strided_convolutions_down_and_four_up() -> None:
    # papers/003: a U-Net variant with strided convolutions instead of max pooling, 4 down, 4 up.
    generator = build_generator("strided_unet", channels=1, image_size=32, latent_size=10)
    convs = [m for m in generator.modules() if type(m) is nn.Conv2d]
    up_convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == 4 and all(c.stride == (2, 2) for c in convs)
    assert len(up_convs) == 4 and all(c.stride == (2, 2) for c in up_convs)
    assert not any(isinstance(m, nn.MaxPool2d) for m in generator.modules())
    h = _images(2, 1, 32)
    for layer in generator.down:
        h = layer(h)
    assert h.shape == (2, 10, 2, 2)  # latent_size channels at the bottom


@pytest.mark.parametrize("image_size", [32, 128])
def test_patch_discriminator_gives_image_and_patch_verdicts(image_size: int) -> None:
    discriminator = build_discriminator("patch", channels=1, image_size=image_size)
    x = _images(3, 1, image_size)
    logits, patch_logits, features = discriminator.forward_with_patches(x)
    assert logits.shape == (3,) and patch_logits.shape == (3, 64)  # an 8x8 grid at every size
    plain_logits, plain_features = discriminator(x)
    torch.testing.assert_close(plain_logits, logits)
    torch.testing.assert_close(plain_features, features)
    # A patch logit depends on its neighbourhood only: changing the top-left corner leaves the
    # bottom-right patches alone.
    discriminator.eval()
    with torch.no_grad():
        before = discriminator.forward_with_patches(x)[1].view(3, 8, 8)
        x[:, :, : image_size // 8, : image_size // 8] = 1.0
        after = discriminator.forward_with_patches(x)[1].view(3, 8, 8)
    assert torch.equal(before[:, 4:, 4:], after[:, 4:, 4:])
    assert not torch.equal(before[:, 0, 0], after[:, 0, 0])


def test_latent_size_sets_the_naive_bottleneck() -> None:
    small = build_generator("naive", channels=1, image_size=32, latent_size=10)
    large = build_generator("naive", channels=1, image_size=32, latent_size=200)
    assert count_parameters(small) < count_parameters(large)
    bottleneck = small.encoder(_images(2, 1, 32))
    assert bottleneck.shape == (2, 10, 2, 2)


# --- discriminators ----------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [32, 64, 128])
@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_returns_logits_and_features(name: str, image_size: int) -> None:
    discriminator = build_discriminator(name, channels=3, image_size=image_size)
    logits, features = discriminator(_images(3, 3, image_size))
    assert logits.shape == (3,)
    assert features.ndim == 2 and features.shape[0] == 3 and features.shape[1] > 0
    assert torch.isfinite(logits).all() and torch.isfinite(features).all()


@pytest.mark.parametrize("strategy", BN_STRATEGIES.names())
@pytest.mark.parametrize("name", DISCRIMINATORS.names())
def test_discriminator_forward_backward_under_every_bn_strategy(name: str, strategy: str) -> None:
    discriminator = build_discriminator(name, channels=1, image_size=32, bn_strategy=strategy)
    x = _images(4, 1, 32)
    total_loss = torch.zeros(())
    for route in ROUTES:
        with bn_route(discriminator, route):
            logits, features = discriminator(x)
            # Discriminators with a patch-level output (papers/003) are exercised through it too.
            if hasattr(discriminator, "forward_with_patches"):
                _, patch_logits, _ = discriminator.forward_with_patches(x)
                logits = torch.cat([logits, patch_logits.flatten()])
        # Logits are raw: a loss with logits must accept them.
        total_loss = total_loss + nn.functional.binary_cross_entropy_with_logits(
            logits, torch.ones_like(logits)
        ) + features.square().mean()
    total_loss.backward()
    _assert_every_parameter_learns(discriminator)


def _vgg_conv_bn_leaky_pool(discriminator: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VGG discriminator as AGAD writes it: Conv-BN-LeakyReLU-MaxPool per block."""
    layers = list(discriminator.features)
    for conv, norm in (layers[0:2], layers[4:6]):
        x = nn.functional.max_pool2d(nn.functional.leaky_relu(norm(conv(x)), 0.2), 2)
    features = layers[8](x)
    return discriminator.classifier(features).flatten(), features.flatten(1)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_vgg_pooling_before_leaky_relu_equals_the_paper_order(memory_format: torch.memory_format) -> None:
    # LeakyReLU is monotone non-decreasing, so it commutes with max pooling; BN (whose scale may be
    # negative, as set here) stays before the pool.
    discriminator = build_discriminator("vgg", channels=1, image_size=32).double()
    kinds = [type(layer) for layer in discriminator.features]
    assert kinds[1:4] == [RoutedBatchNorm2d, nn.MaxPool2d, nn.LeakyReLU], kinds
    with torch.no_grad():
        for layer in discriminator.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.weight.copy_(torch.randn_like(layer.weight))  # about half negative
                layer.bias.copy_(torch.randn_like(layer.bias))
    discriminator.to(memory_format=memory_format)
    x = _images(8, 1, 32).double()
    x[:2] = 0.5  # constant images: ties inside every pooling window
    results = []
    for forward in (discriminator, lambda inputs: _vgg_conv_bn_leaky_pool(discriminator, inputs)):
        discriminator.zero_grad(set_to_none=True)
        inputs = x.clone().contiguous(memory_format=memory_format).requires_grad_()
        logits, features = forward(inputs)
        (logits.sum() + features.square().mean()).backward()
        grads = [p.grad.clone() for p in discriminator.parameters()]
        results.append((logits.detach(), features.detach(), inputs.grad, grads))
    (logits_new, features_new, x_grad_new, grads_new), (logits_old, features_old, x_grad_old, grads_old) = results
    torch.testing.assert_close(logits_new, logits_old)
    torch.testing.assert_close(features_new, features_old)
    torch.testing.assert_close(x_grad_new, x_grad_old)
    for new, old in zip(grads_new, grads_old):
        torch.testing.assert_close(new, old)


# --- input checks ------------------------------------------------------------------------------

ALL_BUILDERS = [("generator", name) for name in GENERATORS.names()] + [
    ("discriminator", name) for name in DISCRIMINATORS.names()
]


def _build(
    kind: str, name: str, channels: int, image_size: int, bn_strategy: str = "shared"
) -> nn.Module:
    if kind == "generator":
        return build_generator(name, channels, image_size, bn_strategy=bn_strategy)
    return build_discriminator(name, channels, image_size, bn_strategy=bn_strategy)


@pytest.mark.parametrize(("kind", "name"), ALL_BUILDERS)
def test_unsupported_image_size_is_a_config_error(kind: str, name: str) -> None:
    with pytest.raises(ConfigError, match=r"image_size.*32, 64, 128.*48"):
        _build(kind, name, channels=1, image_size=48)


@pytest.mark.parametrize(("kind", "name"), ALL_BUILDERS)
def test_unsupported_channels_is_a_config_error(kind: str, name: str) -> None:
    with pytest.raises(ConfigError, match=r"channels.*1, 3.*got 2"):
        _build(kind, name, channels=2, image_size=32)


def test_unknown_names_are_rejected_with_the_choices() -> None:
    with pytest.raises(RayganError, match="unet3"):
        build_generator("unet3", 1, 32)
    with pytest.raises(RayganError, match="resnet"):
        build_discriminator("resnet", 1, 32)
    with pytest.raises(RayganError, match="frozen.*advprop"):
        norm_factory("frozen")


def test_nonpositive_latent_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="latent_size.*0"):
        build_generator("naive", 1, 32, latent_size=0)


# --- initialisation ----------------------------------------------------------------------------


def _conv_weights(model: nn.Module) -> list[torch.Tensor]:
    return [
        m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]


def _batch_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize(("kind", "name"), ALL_BUILDERS)
def test_every_model_is_built_with_dcgan_init(kind: str, name: str) -> None:
    model = _build(kind, name, channels=1, image_size=32)
    for weight in _conv_weights(model):
        if weight.numel() >= 1000:  # enough samples for a tight std estimate
            assert weight.mean().abs() < 0.005
            assert weight.std().item() == pytest.approx(0.02, rel=0.15)
    batch_norm_weights = torch.cat([bn.weight.detach() for bn in _batch_norms(model)])
    assert batch_norm_weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert batch_norm_weights.std().item() == pytest.approx(0.02, rel=0.25)
    assert all(bn.bias.abs().max() == 0 for bn in _batch_norms(model))


def test_dcgan_init_changes_pytorch_default_init_only_through_apply() -> None:
    # Fan-in 16: PyTorch's default init has std 1/sqrt(3 * 16) ~ 0.14, far from DCGAN's 0.02.
    model = nn.Sequential(nn.Conv2d(1, 64, 4), nn.BatchNorm2d(64))
    default_weight = model[0].weight.detach().clone()
    assert default_weight.std() > 0.1
    assert torch.equal(model[1].weight, torch.ones(64))

    # anomalib's mistake: calling the init on the container touches no layer.
    dcgan_init(model)
    assert torch.equal(model[0].weight, default_weight)

    model.apply(dcgan_init)
    assert model[0].weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert not torch.equal(model[1].weight, torch.ones(64))
    assert model[1].weight.std().item() == pytest.approx(0.02, rel=0.3)


def test_count_parameters_counts_only_trainable() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    assert count_parameters(model) == 16 + 25
    model[0].requires_grad_(False)
    assert count_parameters(model) == 25


# --- batch-norm strategies ---------------------------------------------------------------------


def _routed(strategy: str, num_features: int = 3) -> RoutedBatchNorm2d:
    norm = norm_factory(strategy)(num_features)
    assert isinstance(norm, RoutedBatchNorm2d)
    return norm


def _running_state(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, ...]:
    return (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())


def _same_state(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _shifted_batch() -> torch.Tensor:
    # Mean and variance far from the initial running stats (0, 1), so any update shows.
    return torch.randn(8, 3, 4, 4) * 3 + 5


def test_strategy_flags() -> None:
    flags = {
        name: (_routed(name).auxiliary, _routed(name).freeze_for_anomalies)
        for name in BN_STRATEGIES.names()
    }
    assert flags == {
        "shared": (False, False),
        "advprop": (True, False),
        "freeze": (False, True),
        "advprop+freeze": (True, True),
    }


@pytest.mark.parametrize("strategy", ["freeze", "advprop+freeze"])
def test_frozen_route_leaves_main_running_stats_unchanged(strategy: str) -> None:
    norm = _routed(strategy).train()
    before = _running_state(norm.main)
    with bn_route(norm, "anomaly"):
        out = norm(_shifted_batch())
    assert _same_state(before, _running_state(norm.main))
    # Normalised with running stats (0, 1), not the batch's: the output keeps the shift.
    assert out.mean() > 3

    norm(_shifted_batch())  # route "normal"
    after = _running_state(norm.main)
    assert not torch.equal(before[0], after[0])
    assert not torch.equal(before[1], after[1])
    assert after[2] == before[2] + 1


def test_frozen_route_still_trains_main_affine_params() -> None:
    norm = _routed("freeze").train()
    with bn_route(norm, "anomaly"):
        norm(_shifted_batch()).square().mean().backward()
    assert norm.main.weight.grad is not None and norm.main.weight.grad.abs().sum() > 0
    assert norm.main.bias.grad is not None and norm.main.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("strategy", ["shared", "advprop"])
def test_anomaly_route_without_freeze_uses_batch_stats(strategy: str) -> None:
    norm = _routed(strategy).train()
    before = _running_state(norm.main)
    with bn_route(norm, "anomaly"):
        norm(_shifted_batch())
    assert not torch.equal(before[0], norm.main.running_mean)


@pytest.mark.parametrize("strategy", ["advprop", "advprop+freeze"])
def test_auxiliary_route_updates_only_the_auxiliary_stats(strategy: str) -> None:
    norm = _routed(strategy).train()
    main_before = _running_state(norm.main)
    aux_before = _running_state(norm.aux)
    with bn_route(norm, "pseudo_anomaly"):
        norm(_shifted_batch()).sum().backward()
    assert _same_state(main_before, _running_state(norm.main))
    assert not torch.equal(aux_before[0], norm.aux.running_mean)
    assert norm.aux.num_batches_tracked == aux_before[2] + 1
    assert norm.main.weight.grad is None and norm.aux.weight.grad is not None


@pytest.mark.parametrize("strategy", ["shared", "freeze"])
def test_pseudo_anomaly_route_without_auxiliary_uses_main(strategy: str) -> None:
    norm = _routed(strategy).train()
    before = _running_state(norm.main)
    with bn_route(norm, "pseudo_anomaly"):
        norm(_shifted_batch())
    assert not torch.equal(before[0], norm.main.running_mean)


@pytest.mark.parametrize("strategy", BN_STRATEGIES.names())
def test_eval_mode_uses_main_running_stats_for_every_route(strategy: str) -> None:
    norm = _routed(strategy).train()
    # Give main and aux different statistics, so using the wrong one would show.
    norm(_shifted_batch())
    if norm.aux is not None:
        with bn_route(norm, "pseudo_anomaly"):
            norm(_shifted_batch() * 5)
    norm.eval()
    x = _shifted_batch()
    before = _running_state(norm.main)
    outputs = []
    for route in ROUTES:
        with bn_route(norm, route):
            outputs.append(norm(x))
    for out in outputs:
        torch.testing.assert_close(out, norm.main(x))
    assert _same_state(before, _running_state(norm.main))


def test_eval_mode_outputs_agree_across_routes_in_a_whole_generator() -> None:
    generator = build_generator("naive", 1, 32, bn_strategy="advprop+freeze").eval()
    x = _images(2, 1, 32)
    with torch.no_grad():
        outputs = []
        for route in ROUTES:
            with bn_route(generator, route):
                outputs.append(generator(x))
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0])


def test_bn_route_sets_and_restores_routes() -> None:
    generator = build_generator("naive", 1, 32, bn_strategy="advprop")
    routed = [m for m in generator.modules() if isinstance(m, RoutedBatchNorm2d)]
    assert routed and all(m.route == "normal" for m in routed)

    with bn_route(generator, "pseudo_anomaly"):
        assert all(m.route == "pseudo_anomaly" for m in routed)
        with bn_route(generator, "anomaly"):
            assert all(m.route == "anomaly" for m in routed)
        assert all(m.route == "pseudo_anomaly" for m in routed)
    assert all(m.route == "normal" for m in routed)

    with pytest.raises(RuntimeError, match="boom"):
        with bn_route(generator, "anomaly"):
            raise RuntimeError("boom")
    assert all(m.route == "normal" for m in routed)


def test_bn_route_reaches_through_a_wrapper() -> None:
    # DistributedDataParallel keeps the model as ``.module``; modules() walks into it.
    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    discriminator = build_discriminator("vgg", 1, 32, bn_strategy="advprop")
    with bn_route(Wrapper(discriminator), "pseudo_anomaly"):
        routes = {m.route for m in discriminator.modules() if isinstance(m, RoutedBatchNorm2d)}
    assert routes == {"pseudo_anomaly"}


def test_unknown_route_is_a_value_error_naming_it() -> None:
    norm = _routed("advprop")
    with pytest.raises(ValueError, match="'pseudo-anomaly'"):
        with bn_route(norm, "pseudo-anomaly"):
            pass
    with pytest.raises(ValueError, match="'abnormal'"):
        norm.route = "abnormal"
    assert norm.route == "normal"


@pytest.mark.parametrize(("kind", "name"), ALL_BUILDERS)
def test_every_batch_norm_comes_from_the_strategy(kind: str, name: str) -> None:
    model = _build(kind, name, channels=1, image_size=32, bn_strategy="advprop")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    routed = [m for m in model.modules() if isinstance(m, RoutedBatchNorm2d)]
    # Every BatchNorm2d is a main or aux BN of a routed norm: none bypassed the factory.
    assert len(norms) == 2 * len(routed)
    assert routed and all(m.auxiliary for m in routed)
