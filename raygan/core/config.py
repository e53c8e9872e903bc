"""The strict configuration tree.

Every section is a dataclass whose fields carry a one-line ``help`` (shown by the CLI's ``--help``)
and, where needed, a validator. ``from_dict`` rejects unknown keys and impossible values with an
error that names the key (``data.gamma``), so a misspelt key can never fall back silently to a
default. A configuration round-trips through ``to_dict``/JSON and has a stable hash.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from raygan.core.errors import ConfigError

C = TypeVar("C", bound="ConfigSection")

PROTOCOLS = ("normal_class", "anomaly_class")
PRECISIONS = ("fp32", "bf16")
IMAGE_SIZES = (32, 64, 128)


def option(default: Any, help: str, choices: tuple | None = None, **kwargs: Any) -> Any:
    """A config field with its ``--help`` text (and optional fixed choices) in the metadata."""
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


class ConfigSection:
    """Base for config dataclasses: strict construction from dicts and validation."""

    def validate(self, prefix: str) -> None:
        """Check cross-field constraints; raise ConfigError naming ``prefix.key``."""

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], prefix: str = "") -> C:
        if not isinstance(values, dict):
            raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(values).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(names))
        if unknown:
            where = f"{prefix}." if prefix else ""
            raise ConfigError(
                f"unknown config key {where}{unknown[0]}; valid keys: {', '.join(sorted(names))}"
            )
        hints = _type_hints(cls)
        kwargs = {}
        for name, value in values.items():
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(value, hints[name], key)
        obj = cls(**kwargs)
        obj.check(prefix)
        return obj

    def check(self, prefix: str = "") -> None:
        """Validate field types, choices, and the section's own constraints."""
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            key = f"{prefix}.{f.name}" if prefix else f.name
            value = getattr(self, f.name)
            if isinstance(value, ConfigSection):
                value.check(key)
                continue
            _coerce(value, hints[f.name], key)
            choices = f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:  # None: the method's default
                raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")
        self.validate(prefix)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def stable_hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # Resolving string annotations costs milliseconds; studies validate thousands of configs.
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a (simple) type hint, allowing int where float is expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option_type in typing.get_args(hint):
            try:
                return _coerce(value, option_type, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]  # the main type's complaint ("must be a finite number"), not "must be null"
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key} must be null; got {value!r}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        return hint.from_dict(value, key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number; got {value!r}")
        # Checked here, for every float field at once: a range check such as `value < 0` is false
        # for NaN, so a NaN weight would pass it and surface epochs later as a diverged loss.
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number; got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer; got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false; got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string; got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list; got {value!r}")
        (item_type,) = typing.get_args(hint) or (Any,)
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


@dataclass
class DataConfig(ConfigSection):
    """Which images, which one-class protocol, and how the training data is split."""

    dataset: str = option("digits", "data set registry name (raygan data list shows them)")
    data_root: str | None = option(
        None, "directory holding the data set files (searched before $RAYGAN_DATA and system places)"
    )
    download: bool = option(True, "download missing files from the original sources into the cache")
    protocol: str = option(
        "normal_class",
        "normal_class: one class normal, the rest anomalous (AGAD, Deep SAD); "
        "anomaly_class: one class anomalous, the rest normal (GANomaly)",
        choices=PROTOCOLS,
    )
    class_index: int = option(0, "the normal class (normal_class) or the anomalous class (anomaly_class)")
    anomaly_fraction: float = option(
        0.0, "gamma = a/(n+a): fraction of labelled anomalies in the training set (AGAD §4.2.2)"
    )
    anomaly_source: str = option(
        "all", "where labelled anomalies come from: 'all' anomalous classes, or one class index (Deep SAD)"
    )
    val_fraction: float = option(
        0.1, "fraction of every class's training images held out for model selection (never trained on)"
    )
    image_size: int | None = option(
        None, "side length fed to the models (32, 64 or 128); default: the data set's own (AGAD §4.1)"
    )
    channels: int | None = option(
        None, "image channels for image_folder data (1 or 3); default: from the first image"
    )
    seed: int = option(0, "seed for the split and the labelled-anomaly draw")

    def validate(self, prefix: str) -> None:
        p = f"{prefix}." if prefix else ""
        if not 0.0 <= self.anomaly_fraction < 1.0:
            raise ConfigError(
                f"{p}anomaly_fraction (gamma) must be in [0, 1); got {self.anomaly_fraction}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{p}val_fraction must be in (0, 1); got {self.val_fraction}")
        if self.image_size is not None and self.image_size not in IMAGE_SIZES:
            raise ConfigError(
                f"{p}image_size must be one of {', '.join(map(str, IMAGE_SIZES))}; got {self.image_size}"
            )
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"{p}channels must be 1 or 3; got {self.channels}")
        if self.class_index < 0:
            raise ConfigError(f"{p}class_index must be >= 0; got {self.class_index}")
        if self.seed < 0:
            raise ConfigError(f"{p}seed must be >= 0; got {self.seed}")
        if self.anomaly_source != "all" and not self.anomaly_source.isdigit():
            raise ConfigError(
                f"{p}anomaly_source must be 'all' or a class index; got {self.anomaly_source!r}"
            )


SELECTIONS = ("val_auroc", "val_loss", "last")


@dataclass
class ModelConfig(ConfigSection):
    """Networks: generator backbone, discriminator, latent size, batch-norm strategy."""

    backbone: str | None = option(
        None,
        "generator: naive | unet | unetpp | ganomaly | strided_unet (raygan models lists them; AGAD Table 8); "
        "default: the method's own (agad: unetpp, AGAD §3.3.1)",
    )
    discriminator: str | None = option(
        None, "discriminator: vgg (AGAD §3.3.1) | dcgan (GANomaly) | patch (papers/003); default: the method's own"
    )
    latent_size: int = option(100, "bottleneck channels / latent dimension (AGAD Table 7; GANomaly: 100 best)")
    bn_strategy: str | None = option(
        None,
        "generator batch norm: shared | advprop (auxiliary BN for pseudo-anomalies) | freeze "
        "(anomalies use running statistics) | advprop+freeze (AGAD §6.2); default: the method's own "
        "(agad: advprop, §6.2; the others: shared)",
    )

    def validate(self, prefix: str) -> None:
        if self.latent_size < 1:
            raise ConfigError(f"{prefix}.latent_size must be positive; got {self.latent_size}")


ANOMALY_ADVERSARIAL_TARGETS = ("fake", "real")
# W in AGAD's footnote 2: any monotonically decreasing wrap of the distance |x̂ − G(x̂)|₁.
CONTEXTUAL_ADVERSARIAL_WRAPS = ("negative", "reciprocal", "exp")


def method_weight_names() -> tuple[str, ...]:
    """The LossConfig fields that default to null: each method fills the ones it reads."""
    return tuple(f.name for f in dataclasses.fields(LossConfig) if f.default is None)


@dataclass
class LossConfig(ConfigSection):
    """Loss weights; null means the method's own paper default (recorded resolved in config.json)."""

    adversarial_weight: float | None = option(None, "λ_adv (AGAD §4.2: 1; GANomaly w_adv: 1)")
    contextual_weight: float | None = option(None, "λ_con, L1 reconstruction (AGAD: 50; GANomaly: 50; Skip-GANomaly: 40)")
    contextual_adversarial_weight: float | None = option(
        None, "λ_adcon, contextual adversarial term on G(x̂) (AGAD: 15; 0 switches it off, Table 4)"
    )
    latent_weight: float | None = option(None, "λ_lat / w_enc, latent loss (AGAD: 5; GANomaly: 1)")
    detach_pseudo_anomaly: bool | None = option(
        None,
        "feed x̂ into the second generator pass as a fixed pseudo-anomaly (no gradient into G(x)); "
        "the paper does not say (docs/methods.md: measured choice)",
    )
    contextual_adversarial_wrap: str | None = option(
        None,
        "agad: W in W(|x̂ − G(x̂)|₁) for normal batches: negative (−d, eq. 8), reciprocal (1/(d+ε), "
        "bounded like eq. 10) or exp (e^−d); AGAD footnote 2 allows any decreasing W",
        choices=CONTEXTUAL_ADVERSARIAL_WRAPS,
    )
    patch_adversarial_weight: float | None = option(
        None, "imbalance_gan: patch-level adversarial term on reconstructed normals (papers/003 'patch loss'; 1)"
    )
    anomaly_contextual_weight: float | None = option(
        None, "imbalance_gan: λ/(|x − G(x)|₁ + ε) on labelled anomalies, pushing their reconstruction error up (5)"
    )
    anomaly_adversarial_weight: float | None = option(
        None, "imbalance_gan: image-level term of the anomaly discriminator on reconstructed anomalies (1)"
    )
    anomaly_patch_adversarial_weight: float | None = option(
        None, "imbalance_gan: patch-level term of the anomaly discriminator on reconstructed anomalies (1)"
    )
    anomaly_adversarial_target: str | None = option(
        None,
        "imbalance_gan: the verdict G seeks from the anomaly discriminator on reconstructed anomalies: "
        "fake (look unlike the anomaly; default) or real (fool it, the usual GAN sign); papers/003 does not say",
        choices=ANOMALY_ADVERSARIAL_TARGETS,
    )
    reciprocal_epsilon: float = option(1e-6, "ε in λ/(l+ε) of the reciprocal anomaly loss (AGAD eq. 10)")
    discriminator_reset_threshold: float = option(
        1e-5, "δ: re-initialise D when its loss falls below this (AGAD Alg. 1; GANomaly uses 1e-5)"
    )

    def validate(self, prefix: str) -> None:
        for name in method_weight_names():
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{prefix}.{name} must be >= 0; got {value}")
        if self.reciprocal_epsilon <= 0:
            raise ConfigError(f"{prefix}.reciprocal_epsilon must be > 0; got {self.reciprocal_epsilon}")
        if self.discriminator_reset_threshold < 0:
            raise ConfigError(f"{prefix}.discriminator_reset_threshold must be >= 0 (0: never reset D); "
                              f"got {self.discriminator_reset_threshold}")


@dataclass
class TrainConfig(ConfigSection):
    """Optimisation, epochs and model selection."""

    epochs: int = option(15, "training epochs (an epoch is one pass over the normal training images)")
    batch_size: int = option(256, "global mini-batch size (AGAD §4.2: 256)")
    lr: float = option(2e-4, "Adam learning rate for G and D (AGAD §4.2: 0.0002)")
    beta1: float = option(0.5, "Adam β1 (DCGAN/GANomaly: 0.5)")
    beta2: float = option(0.999, "Adam β2")
    select: str = option(
        "val_auroc",
        "epoch selection: val_auroc (validation AUROC) | val_loss (lowest anomaly score of validation "
        "normals) | last; never the test set",
        choices=SELECTIONS,
    )
    eval_batch_size: int = option(512, "batch size for scoring validation and test images")
    threads: int | None = option(None, "torch intra-op threads (default: torch's own choice)")
    channels_last: bool = option(True, "NHWC memory format for the networks (faster oneDNN convolutions on CPU)")
    deterministic: bool = option(True, "torch.use_deterministic_algorithms (same seed, same AUROC on CPU)")
    log_every: int = option(
        10, "steps between reads of the loss terms on the host (TensorBoard, progress bar, NaN check); "
        "the device is never waited for in between"
    )
    precision: str = option(
        "fp32",
        "fp32 (TF32 matmuls and convolutions allowed on CUDA) | bf16: the networks run under bf16 autocast, "
        "weights, optimiser state and losses stay fp32 (also on CPU autocast)",
        choices=PRECISIONS,
    )

    def validate(self, prefix: str) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{prefix}.{name} must be >= 1; got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"{prefix}.lr must be > 0; got {self.lr}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"{prefix}.threads must be >= 1 (or null: torch's own choice); got {self.threads}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{prefix}.{name} must be in [0, 1); got {getattr(self, name)}")


@dataclass
class RunConfig(ConfigSection):
    """One training run, completely: a trial of a study is exactly one RunConfig."""

    method: str = option(
        "agad", "agad | ganomaly | skip_ganomaly | imbalance_gan | autoencoder (raygan models lists them)"
    )
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "data set and split"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "networks"})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"help": "loss weights"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "optimisation"})

    @property
    def seed(self) -> int:
        # One seed: the split, the labelled-anomaly draw and the weight initialisation.
        return self.data.seed

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file is not valid JSON: {exc}") from None
        return cls.from_dict(values)
