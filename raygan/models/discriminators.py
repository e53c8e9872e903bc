"""Discriminators: image in, (real/fake logit of shape (B,), features z of shape (B, F)) out.

Every entry of `DISCRIMINATORS` is called as
``factory(channels, image_size, norm=shared_batch_norm)``.
The logit is raw (no sigmoid) so losses can use BCE-with-logits; z is the embedding D_Z that the
latent loss compares between x and x_hat (AGAD §3.3.1, GANomaly's feature matching).
"""

from __future__ import annotations

import torch
from torch import nn

from raygan.models.dcgan import DCGANEncoder
from raygan.models.geometry import check_image_geometry
from raygan.models.init import dcgan_init
from raygan.models.norms import NormFactory, shared_batch_norm
from raygan.registry import Registry

DISCRIMINATORS: Registry[type[nn.Module]] = Registry("discriminator")

LEAKY_SLOPE = 0.2
VGG_WIDTHS = (64, 128)
# The feature map is pooled to a fixed 4x4 so z has the same size (128 * 4 * 4 = 2048) at every
# image size, and a latent-loss weight tuned at 32x32 means the same at 128x128.
VGG_FEATURE_SIDE = 4


@DISCRIMINATORS.register("vgg")
class VGGDiscriminator(nn.Module):
    """AGAD §3.3.1: two Conv-BN-LeakyReLU blocks and a fully convolutional classifier.

    VGG-style: 3x3 convolutions, each block followed by 2x2 max pooling.

    Each block runs Conv-BN-MaxPool-LeakyReLU: LeakyReLU is monotone non-decreasing, so it commutes
    with max pooling and the output (and its gradient) is that of Conv-BN-LeakyReLU-MaxPool, while
    the activation touches a quarter of the full-resolution map (measured: about 5% of an AGAD
    step, benchmarks/throughput.py). BN stays before the pool: its per-channel scale may be
    negative, which does not commute with max.
    """

    def __init__(
        self, channels: int, image_size: int, norm: NormFactory = shared_batch_norm
    ) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        layers: list[nn.Module] = []
        width_in = channels
        for width in VGG_WIDTHS:
            layers += [
                nn.Conv2d(width_in, width, 3, 1, 1, bias=False),
                norm(width),
                nn.MaxPool2d(2),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            ]
            width_in = width
        layers.append(nn.AdaptiveAvgPool2d(VGG_FEATURE_SIDE))
        self.features = nn.Sequential(*layers)
        # A convolution covering the whole 4x4 map: one logit per image, no linear layer.
        self.classifier = nn.Conv2d(width_in, 1, VGG_FEATURE_SIDE)

        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(features).flatten(), features.flatten(1)


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(nn.Module):
    """GANomaly's discriminator: the DCGAN encoder with a single output.

    z is the last 4x4 feature map before the final convolution, flattened (GANomaly's f(.)).
    """

    def __init__(
        self, channels: int, image_size: int, norm: NormFactory = shared_batch_norm
    ) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        encoder = DCGANEncoder(channels, image_size, 1, norm)
        self.features = encoder.features
        self.classifier = encoder.final

        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(features).flatten(), features.flatten(1)
