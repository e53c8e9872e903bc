"""Methods: each owns its model, its losses (named weights), its train step and its anomaly score."""

from raygan.methods.base import METHODS, Method
from raygan.methods import agad, autoencoder, ganomaly, imbalance_gan  # noqa: F401  (register themselves)


def build_method(cfg, channels: int, image_size: int, device="cpu") -> Method:
    """Resolve the method's defaults into ``cfg`` and build it; returns the method (cfg resolved)."""
    cls = METHODS.get(cfg.method)
    return cls(cls.resolve(cfg), channels, image_size, device)


__all__ = ["METHODS", "Method", "build_method"]
