"""DCGAN encoder and decoder as used by GANomaly (Akcay et al. 2018, papers/002).

Shared by the GANomaly generator (G_E, G_D, E) and the GANomaly discriminator. Widths double at
every stride-2 stage from 64 until the map is 4x4; a final 4x4 valid convolution maps it to a
vector. All convolutions are bias-free, as in DCGAN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raygan.models.norms import NormFactory

BASE_WIDTH = 64  # GANomaly's ngf / ndf
LEAKY_SLOPE = 0.2


def _pyramid_stages(image_size: int) -> int:
    # The first conv halves the image; the pyramid halves it further until it is 4x4.
    return int(math.log2(image_size)) - 3


class DCGANEncoder(nn.Module):
    def __init__(
        self, channels: int, image_size: int, out_channels: int, norm: NormFactory
    ) -> None:
        super().__init__()
        width = BASE_WIDTH
        layers: list[nn.Module] = [
            # DCGAN: no norm on the first layer, which sees raw pixels.
            nn.Conv2d(channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        ]
        for _ in range(_pyramid_stages(image_size)):
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                norm(width * 2),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            ]
            width *= 2
        self.features = nn.Sequential(*layers)
        self.feature_channels = width
        self.final = nn.Conv2d(width, out_channels, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.features(x))


class DCGANDecoder(nn.Module):
    def __init__(self, channels: int, image_size: int, latent_size: int, norm: NormFactory) -> None:
        super().__init__()
        stages = _pyramid_stages(image_size)
        width = BASE_WIDTH * 2**stages
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_size, width, 4, 1, 0, bias=False),
            norm(width),
            nn.ReLU(inplace=True),
        ]
        for _ in range(stages):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                norm(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)
