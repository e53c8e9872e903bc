"""Discriminators: image in, (real/fake logit of shape (B,), features z of shape (B, F)) out.

Every entry of `DISCRIMINATORS` is called as
``factory(channels, image_size, norm=shared_batch_norm)``.
The logit is raw (no sigmoid) so losses can use BCE-with-logits; z is the embedding D_Z that the
latent loss compares between x and x_hat (AGAD §3.3.1, GANomaly's feature matching).
"""

from __future__ import annotations

import torch
from torch import nn

from raygan.core.registry import Registry
from raygan.models.dcgan import DCGANEncoder
from raygan.models.geometry import check_image_geometry
from raygan.models.init import dcgan_init
from raygan.models.norms import NormFactory, shared_batch_norm

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


# 8x8 patches at every image size: at 32x32 each patch logit judges a 4x4-pixel cell (with an
# 18-pixel receptive field). The grid size is ours; papers/003 does not give one.
PATCH_GRID = 8
PATCH_WIDTHS = (64, 128, 256)


@DISCRIMINATORS.register("patch")
class PatchDiscriminator(nn.Module):
    """papers/003: a DCGAN-style discriminator with an image-level and a patch-level output.

    ``forward(x)`` returns (image logit (B,), features (B, F)) like every discriminator;
    ``forward(x, return_patches=True)`` (or ``forward_with_patches``) returns (image logit,
    patch logits (B, 64), features). Two stride-2 convolutions make a shared map, pooled to 8x8;
    a 3x3 convolution on it gives one logit per patch, and one more stride-2 block and a 4x4
    convolution the image logit. Under DistributedDataParallel call the wrapper with
    ``return_patches=True`` so that the pass is synchronised.
    """

    def __init__(self, channels: int, image_size: int, norm: NormFactory = shared_batch_norm) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        w0, w1, w2 = PATCH_WIDTHS
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, w0, 4, 2, 1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(w0, w1, 4, 2, 1, bias=False),
            norm(w1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.AdaptiveAvgPool2d(PATCH_GRID),
        )
        self.patch_head = nn.Conv2d(w1, 1, 3, 1, 1)
        self.features = nn.Sequential(
            nn.Conv2d(w1, w2, 4, 2, 1, bias=False),
            norm(w2),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )
        self.classifier = nn.Conv2d(w2, 1, PATCH_GRID // 2)

        self.apply(dcgan_init)

    def forward(
        self, x: torch.Tensor, *, return_patches: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shared = self.trunk(x)
        features = self.features(shared)
        logit = self.classifier(features).flatten()
        if not return_patches:
            return logit, features.flatten(1)
        return logit, self.patch_head(shared).flatten(1), features.flatten(1)

    def forward_with_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self(x, return_patches=True)
