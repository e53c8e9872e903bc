"""The strict configuration tree: unknown keys and impossible values name the key."""

from __future__ import annotations

import json

import pytest

from raygan.core.config import DataConfig
from raygan.core.errors import ConfigError


def test_round_trip_and_stable_hash():
    cfg = DataConfig.from_dict({"dataset": "fashion_mnist", "class_index": 1, "anomaly_fraction": 0.05})
    again = DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.stable_hash() == cfg.stable_hash()
    assert DataConfig.from_dict({"class_index": 2}).stable_hash() != cfg.stable_hash()


@pytest.mark.parametrize(
    "values,message",
    [
        ({"gama": 0.1}, "unknown config key data.gama"),
        ({"anomaly_fraction": 1.0}, "data.anomaly_fraction (gamma) must be in [0, 1)"),
        ({"anomaly_fraction": "0.1"}, "data.anomaly_fraction must be a number"),
        ({"class_index": 1.5}, "data.class_index must be an integer"),
        ({"protocol": "one_vs_rest"}, "data.protocol must be one of normal_class, anomaly_class"),
        ({"val_fraction": 0.0}, "data.val_fraction must be in (0, 1)"),
        ({"image_size": 48}, "data.image_size must be one of 32, 64, 128"),
        ({"download": "yes"}, "data.download must be true or false"),
    ],
)
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError) as info:
        DataConfig.from_dict(values, "data")
    assert message in str(info.value)


def test_int_is_accepted_where_a_float_is_expected():
    assert DataConfig.from_dict({"anomaly_fraction": 0}).anomaly_fraction == 0.0


def test_registry_rejects_a_second_registration_and_lists_names_for_unknown():
    from raygan.core.errors import RayganError
    from raygan.core.registry import Registry

    registry: Registry[int] = Registry("widget")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.add("a", 2)
    with pytest.raises(RayganError, match="unknown widget 'b'; choose one of: a"):
        registry.get("b")
