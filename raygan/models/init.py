"""Weight initialisation and parameter counting."""

from __future__ import annotations

from torch import nn

_CONV_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_BATCH_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation as used by GANomaly (Radford et al. 2016; Akcay et al. 2018).

    Acts on ``module`` alone, not its children: apply it with ``model.apply(dcgan_init)``.
    anomalib called its init on the model itself, which matched no layer type and silently
    left PyTorch's default init in place.
    """
    if isinstance(module, _CONV_TYPES):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, _BATCH_NORM_TYPES):
        nn.init.normal_(module.weight, mean=1.0, std=0.02)
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (what papers report, e.g. AGAD Table 8)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
