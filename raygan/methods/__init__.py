"""Methods: each owns its model, its losses (named weights), its train step and its anomaly score."""

from raygan.methods.base import METHODS, Method
from raygan.methods import agad, autoencoder, ganomaly, imbalance_gan  # noqa: F401  (register themselves)


def build_method(cfg, channels: int, image_size: int, device="cpu") -> Method:
    """Resolve the method's defaults into ``cfg`` and build it; returns the method (cfg resolved)."""
    cls = METHODS.get(cfg.method)
    return cls(cls.resolve(cfg), channels, image_size, device)


def load_method(saved: dict, channels: int, image_size: int, device="cpu") -> Method:
    """The method of a checkpoint payload (``load_checkpoint``): its config's networks, saved weights."""
    from raygan.core.config import RunConfig

    method = build_method(RunConfig.from_dict(saved["config"]), channels, image_size, device)
    method.load_state_dict(saved["method"])
    return method


def network_summary(method: Method) -> str:
    """What a run trains and what it costs, in one phrase: networks, backbones, parameter counts,
    checkpoint size (networks + Adam's two moments, float32)."""
    from raygan.models import count_parameters

    model = method.cfg.model
    counts = {name: count_parameters(net) for name, net in method.networks().items()}
    parts = [f"generator {model.backbone} {counts.pop('generator') / 1e6:.2f} M parameters"]
    parts += [f"{name} {model.discriminator} {n / 1e6:.2f} M" for name, n in counts.items()]  # every D is of that kind
    total = sum(count_parameters(net) for net in method.networks().values())
    return f"{method.cfg.method}: {', '.join(parts)}; about {total * 12 / 1e6:.0f} MB per checkpoint"


__all__ = ["METHODS", "Method", "build_method", "load_method", "network_summary"]
