"""Model layer: generator and discriminator backbones and batch-norm strategies (plain PyTorch).

Backbones know nothing of losses or training; methods build them by name:

    generator = build_generator("unetpp", channels=1, image_size=32, bn_strategy="advprop")
    with bn_route(generator, "pseudo_anomaly"):
        x_hat_prime = generator(x_hat)
"""

from __future__ import annotations

from torch import nn

from raygan.models.discriminators import DISCRIMINATORS
from raygan.models.generators import GENERATORS
from raygan.models.geometry import SUPPORTED_CHANNELS, SUPPORTED_IMAGE_SIZES, check_image_geometry
from raygan.models.init import count_parameters, dcgan_init
from raygan.models.norms import (
    BN_STRATEGIES,
    ROUTES,
    NormFactory,
    RoutedBatchNorm2d,
    bn_route,
    norm_factory,
)

__all__ = [
    "BN_STRATEGIES",
    "DISCRIMINATORS",
    "GENERATORS",
    "ROUTES",
    "SUPPORTED_CHANNELS",
    "SUPPORTED_IMAGE_SIZES",
    "NormFactory",
    "RoutedBatchNorm2d",
    "bn_route",
    "build_discriminator",
    "build_generator",
    "check_image_geometry",
    "count_parameters",
    "dcgan_init",
    "norm_factory",
]


def build_generator(
    name: str, channels: int, image_size: int, latent_size: int = 100, bn_strategy: str = "shared"
) -> nn.Module:
    # Look both names up before building anything, so a typo fails fast and names itself.
    factory = GENERATORS.get(name)
    norm = norm_factory(bn_strategy)
    return factory(channels, image_size, latent_size=latent_size, norm=norm)


def build_discriminator(
    name: str, channels: int, image_size: int, bn_strategy: str = "shared"
) -> nn.Module:
    factory = DISCRIMINATORS.get(name)
    norm = norm_factory(bn_strategy)
    return factory(channels, image_size, norm=norm)
