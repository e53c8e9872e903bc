"""The image shapes the backbones are built for, checked once before any layer is made."""

from __future__ import annotations

from raygan.core.errors import ConfigError

# AGAD §4.1: MNIST, Fashion-MNIST and CIFAR at 32x32, the medical sets at 128x128; 64 sits between.
SUPPORTED_IMAGE_SIZES = (32, 64, 128)
SUPPORTED_CHANNELS = (1, 3)


def check_image_geometry(channels: int, image_size: int) -> None:
    if isinstance(channels, bool) or channels not in SUPPORTED_CHANNELS:
        raise ConfigError(
            f"channels must be one of {', '.join(map(str, SUPPORTED_CHANNELS))}; got {channels!r}"
        )
    if isinstance(image_size, bool) or image_size not in SUPPORTED_IMAGE_SIZES:
        raise ConfigError(
            f"image_size must be one of {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}; "
            f"got {image_size!r}"
        )


def check_latent_size(latent_size: int) -> None:
    if isinstance(latent_size, bool) or not isinstance(latent_size, int) or latent_size < 1:
        raise ConfigError(f"latent_size must be a positive integer; got {latent_size!r}")
