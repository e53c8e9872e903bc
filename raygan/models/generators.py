"""Generator backbones: image in, reconstruction in [-1, 1] (tanh) of the same shape out.

Every entry of `GENERATORS` is called as
``factory(channels, image_size, latent_size=100, norm=shared_batch_norm)``; every BatchNorm comes
from ``norm``, so a batch-norm strategy (raygan.models.norms) is just another norm factory.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raygan.core.registry import Registry
from raygan.models.dcgan import DCGANDecoder, DCGANEncoder
from raygan.models.geometry import check_image_geometry, check_latent_size
from raygan.models.init import dcgan_init
from raygan.models.norms import NormFactory, shared_batch_norm

GENERATORS: Registry[type[nn.Module]] = Registry("generator")

LEAKY_SLOPE = 0.2  # AGAD Table 7


@GENERATORS.register("naive")
class NaiveEncoderDecoder(nn.Module):
    """AGAD Table 7: Conv(4, 2, 1) encoder to a ``latent_size``-channel bottleneck, then a mirror.

    At 32x32 the bottleneck is 2x2. Larger images get extra 256-wide stride-2 stages so the
    bottleneck stays 2x2 x latent_size: the capacity of the bottleneck, which is what makes
    anomalies hard to reconstruct, does not grow with the image.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_size: int = 100,
        norm: NormFactory = shared_batch_norm,
    ) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        check_latent_size(latent_size)
        extra_stages = int(math.log2(image_size // 32))
        widths = [64, 128, 256] + [256] * extra_stages

        encoder: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        ]
        for width_in, width_out in zip(widths, widths[1:]):
            encoder += [
                nn.Conv2d(width_in, width_out, 4, 2, 1, bias=False),
                norm(width_out),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            ]
        encoder.append(nn.Conv2d(widths[-1], latent_size, 4, 2, 1))
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [
            nn.ConvTranspose2d(latent_size, widths[-1], 4, 2, 1, bias=False),
            norm(widths[-1]),
            nn.ReLU(inplace=True),
        ]
        for width_in, width_out in zip(widths[:0:-1], widths[-2::-1]):
            decoder += [
                nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False),
                norm(width_out),
                nn.ReLU(inplace=True),
            ]
        decoder += [nn.ConvTranspose2d(widths[0], channels, 4, 2, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*decoder)

        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


# Zhou et al.'s filter widths for levels 0..4 (UNet++ paper). With them, single-channel input and
# two 3x3 convolutions per node, their U-Net has 7.76M and their UNet++ 9.04M parameters: exactly
# the numbers AGAD Table 8 reports, so these are the networks AGAD used.
UNET_WIDTHS = (32, 64, 128, 256, 512)


def _conv_node(
    in_channels: int,
    out_channels: int,
    norm: NormFactory,
    *,
    stride: int = 1,
    preactivate: bool = True,
) -> nn.Sequential:
    # AGAD Fig. 5: a node is ReLU-Conv-BN (twice, as in Zhou et al.'s units). Pre-activation
    # keeps each node's output a BN output, which is what skips and concatenations carry.
    layers: list[nn.Module] = [nn.ReLU()] if preactivate else []
    layers += [
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        norm(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
        norm(out_channels),
    ]
    return nn.Sequential(*layers)


def _up_node(in_channels: int, out_channels: int, norm: NormFactory) -> nn.Sequential:
    # AGAD Fig. 5: ReLU-ConvTranspose-BN for upsampling; 2x2 stride 2 as in Zhou et al.
    return nn.Sequential(
        nn.ReLU(),
        nn.ConvTranspose2d(in_channels, out_channels, 2, 2, bias=False),
        norm(out_channels),
    )


class NestedUNet(nn.Module):
    """The node grid x^{i,j} of AGAD Fig. 5 (level i: resolution 1/2^i; j: position on a skip path).

    Backbone x^{i,0}: a stride-2 first convolution replaces max pooling (strided convs down, as in
    Skip-GANomaly and papers/003), four times down.
    U-Net (``dense=False``): only the nodes with i + j = 4 exist; x^{i,4-i} sees the skip x^{i,0}
    and the upsampled x^{i+1,3-i}.
    UNet++ (``dense=True``): every x^{i,j} with i + j <= 4 exists and sees all of x^{i,0..j-1}
    plus the upsampled x^{i+1,j-1} (dense nested skip pathways, Zhou et al. 2020).
    The output is read from x^{0,4} (no deep supervision; it would only add 1x1 heads).
    """

    dense: bool  # set by the registered subclasses

    # latent_size is accepted for the uniform factory signature; a U-Net has no vector bottleneck
    # (the 512-wide x^{4,0} map is part of Table 8's count), so it does not use it.
    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_size: int = 100,
        norm: NormFactory = shared_batch_norm,
    ) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        dense = self.dense
        self.depth = len(UNET_WIDTHS) - 1
        self.nodes = nn.ModuleDict()
        self.upsamplers = nn.ModuleDict()

        # Raw pixels in [-1, 1] must not go through a ReLU, so the first node starts with a conv.
        self.nodes[self._key(0, 0)] = _conv_node(channels, UNET_WIDTHS[0], norm, preactivate=False)
        for level in range(1, self.depth + 1):
            self.nodes[self._key(level, 0)] = _conv_node(
                UNET_WIDTHS[level - 1], UNET_WIDTHS[level], norm, stride=2
            )
        for j in range(1, self.depth + 1):
            for level in range(self.depth - j + 1):
                if not self._has_node(level, j):
                    continue
                width = UNET_WIDTHS[level]
                skip_count = j if dense else 1
                self.upsamplers[self._key(level, j)] = _up_node(UNET_WIDTHS[level + 1], width, norm)
                self.nodes[self._key(level, j)] = _conv_node((skip_count + 1) * width, width, norm)

        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(UNET_WIDTHS[0], channels, 1), nn.Tanh())

        self.apply(dcgan_init)

    @staticmethod
    def _key(level: int, j: int) -> str:
        return f"x{level}_{j}"

    def _has_node(self, level: int, j: int) -> bool:
        return j == 0 or self.dense or level + j == self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: dict[tuple[int, int], torch.Tensor] = {}
        h = x
        for level in range(self.depth + 1):
            h = self.nodes[self._key(level, 0)](h)
            outputs[level, 0] = h
        for j in range(1, self.depth + 1):
            for level in range(self.depth - j + 1):
                if not self._has_node(level, j):
                    continue
                skips = [outputs[level, k] for k in range(j) if (level, k) in outputs]
                upsampled = self.upsamplers[self._key(level, j)](outputs[level + 1, j - 1])
                node = self.nodes[self._key(level, j)]
                outputs[level, j] = node(torch.cat([*skips, upsampled], 1))
        return self.head(outputs[0, self.depth])


@GENERATORS.register("unet")
class UNet(NestedUNet):
    """U-Net (Ronneberger et al. 2015; Skip-GANomaly's generator): skips x^{i,0} -> x^{i,4-i}.

    Widths 32..512 as in Zhou et al., giving Table 8's 7.76 M parameters at 1x32x32.
    """

    dense = False


@GENERATORS.register("unetpp")
class UNetPlusPlus(NestedUNet):
    """UNet++ (Zhou et al. 2020; AGAD's main generator, §3.3.1): dense nested skip pathways."""

    dense = True


@GENERATORS.register("ganomaly")
class GanomalyGenerator(nn.Module):
    """GANomaly's encoder-decoder-encoder G_E -> G_D -> E (Akcay et al. 2018, papers/002).

    ``forward(x)`` returns x_hat like every generator. GANomaly's latent loss and anomaly score
    also need z = G_E(x) and z_hat = E(x_hat): ``forward(x, return_latents=True)`` (or
    ``forward_with_latents(x)``) returns (x_hat, z, z_hat), z and z_hat of shape (B, latent_size).
    Under DistributedDataParallel call the wrapper, ``ddp_model(x, return_latents=True)``: DDP
    synchronises gradients only for passes through its own forward.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_size: int = 100,
        norm: NormFactory = shared_batch_norm,
    ) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        check_latent_size(latent_size)
        self.encoder = DCGANEncoder(channels, image_size, latent_size, norm)
        self.decoder = DCGANDecoder(channels, image_size, latent_size, norm)
        self.reencoder = DCGANEncoder(channels, image_size, latent_size, norm)

        self.apply(dcgan_init)

    def forward(
        self, x: torch.Tensor, *, return_latents: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        x_hat = self.decoder(z)
        if not return_latents:
            # The re-encoder only serves the latent loss and score; skip it when nobody asks.
            return x_hat
        z_hat = self.reencoder(x_hat)
        return x_hat, z.flatten(1), z_hat.flatten(1)

    def forward_with_latents(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self(x, return_latents=True)


# papers/003: 64 filters at the first level, doubling per strided convolution (pix2pix's widths).
STRIDED_UNET_WIDTHS = (64, 128, 256)


@GENERATORS.register("strided_unet")
class StridedUNet(nn.Module):
    """papers/003 (Kim et al. 2020): a U-Net of 4 strided convolutions down and 4 up-convolutions.

    One Conv(4, 2, 1) per level replaces U-Net's two convolutions and max pooling, as the poster
    describes ("4 convolutional layers followed by 4 up-convolutions"); each up-convolution sees
    the previous one's output concatenated with the skip from its level. The deepest level has
    ``latent_size`` channels (2x2 at 32x32), as the naive backbone's bottleneck. The widths and
    the 4x4 kernels are ours (pix2pix's U-Net), the poster gives neither.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_size: int = 100,
        norm: NormFactory = shared_batch_norm,
    ) -> None:
        super().__init__()
        check_image_geometry(channels, image_size)
        check_latent_size(latent_size)
        widths = [*STRIDED_UNET_WIDTHS, latent_size]
        self.down = nn.ModuleList()
        width_in = channels
        for level, width in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(width_in, width, 4, 2, 1, bias=level == 0)]
            if level > 0:  # DCGAN: no norm on the layer that sees raw pixels
                layers.append(norm(width))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
            self.down.append(nn.Sequential(*layers))
            width_in = width
        self.up = nn.ModuleList()
        for level in range(len(widths) - 1, 0, -1):
            # The deepest up-convolution sees the bottleneck alone; the others also the skip.
            width_in = widths[level] if level == len(widths) - 1 else 2 * widths[level]
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(width_in, widths[level - 1], 4, 2, 1, bias=False),
                norm(widths[level - 1]),
                nn.ReLU(inplace=True),
            ))
        self.head = nn.Sequential(nn.ConvTranspose2d(2 * widths[0], channels, 4, 2, 1), nn.Tanh())

        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = self.up[0](skips.pop())
        for layer in self.up[1:]:
            h = layer(torch.cat([h, skips.pop()], 1))
        return self.head(torch.cat([h, skips.pop()], 1))
