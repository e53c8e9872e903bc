"""One-class split arithmetic, leakage, determinism, and the real digits set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raygan.core.config import DataConfig
from raygan.core.errors import ConfigError
from raygan.data import build_split, load_dataset, split_tensors
from raygan.data.datasets import ImageDataset


def synthetic(n_train_per_class=200, n_test_per_class=30, classes=10) -> ImageDataset:
    # interleaved labels, not a NumPy permutation: the pinned-indices test must not depend on NumPy
    train_labels = np.tile(np.arange(classes), n_train_per_class)
    test_labels = np.repeat(np.arange(classes), n_test_per_class)
    return ImageDataset(
        name="synthetic",
        class_names=[f"c{i}" for i in range(classes)],
        train_images=np.zeros((len(train_labels), 1, 4, 4), np.uint8),
        train_labels=train_labels,
        test_images=np.zeros((len(test_labels), 1, 4, 4), np.uint8),
        test_labels=test_labels,
        image_size=32,
        location="memory",
    )


def cfg(**kw) -> DataConfig:
    return DataConfig.from_dict({"dataset": "synthetic", **kw})


# 200 images per class, 10% to validation -> n = 180 normal training images for normal_class;
# a = round(γ n / (1 - γ)): γ=.01 -> 1.82 -> 2; .05 -> 9.47 -> 9; .2 -> 45.
@pytest.mark.parametrize("gamma,anomalies", [(0.0, 0), (0.01, 2), (0.05, 9), (0.2, 45)])
def test_normal_class_counts(gamma, anomalies):
    split = build_split(synthetic(), cfg(class_index=3, anomaly_fraction=gamma))
    assert split.counts() == {
        "train": {"normal": 180, "anomalous": anomalies},
        "val": {"normal": 20, "anomalous": 180},
        "test": {"normal": 30, "anomalous": 270},
    }


# anomaly_class: 9 normal classes x 180 = 1620 normal; γ=.05 -> 85.26 -> 85; γ=.01 -> 16.36 -> 16.
@pytest.mark.parametrize("gamma,anomalies", [(0.0, 0), (0.01, 16), (0.05, 85)])
def test_anomaly_class_counts(gamma, anomalies):
    split = build_split(synthetic(), cfg(protocol="anomaly_class", class_index=7, anomaly_fraction=gamma))
    assert split.counts() == {
        "train": {"normal": 1620, "anomalous": anomalies},
        "val": {"normal": 180, "anomalous": 20},
        "test": {"normal": 270, "anomalous": 30},
    }
    assert split.anomalous_classes == [7]


def test_gamma_larger_than_the_anomaly_pool_is_an_error():
    with pytest.raises(ConfigError, match="needs 405 labelled anomalies.*only 180"):
        build_split(synthetic(), cfg(protocol="anomaly_class", class_index=7, anomaly_fraction=0.2))


@pytest.mark.parametrize("protocol", ["normal_class", "anomaly_class"])
def test_no_overlap_and_targets_follow_the_protocol(protocol):
    data = synthetic()
    split = build_split(data, cfg(protocol=protocol, class_index=2, anomaly_fraction=0.05))
    train, val = set(split.train.indices), set(split.val.indices)
    assert not train & val
    assert len(train) == len(split.train.indices)  # no duplicates
    for part, labels in ((split.train, data.train_labels), (split.val, data.train_labels), (split.test, data.test_labels)):
        expected = np.isin(labels[part.indices], split.anomalous_classes).astype(int)
        np.testing.assert_array_equal(part.targets, expected)
    # γ = a / (n + a) within one image
    c = split.counts()["train"]
    assert abs(c["anomalous"] / (c["normal"] + c["anomalous"]) - 0.05) < 1 / (c["normal"] + c["anomalous"])


def test_single_known_anomaly_class_like_deep_sad():
    data = synthetic()
    split = build_split(data, cfg(class_index=0, anomaly_fraction=0.1, anomaly_source="4"))
    anomalies = split.train.indices[split.train.targets == 1]
    assert len(anomalies) == 20 and set(data.train_labels[anomalies]) == {4}
    # validation and test still hold every anomalous class
    assert set(split.val.classes[split.val.targets == 1]) == set(range(1, 10))
    assert split.counts()["test"]["anomalous"] == 270


def test_anomaly_source_must_be_anomalous():
    with pytest.raises(ConfigError, match="anomaly_source 0 is not an anomalous class"):
        build_split(synthetic(), cfg(class_index=0, anomaly_fraction=0.1, anomaly_source="0"))


def test_same_arguments_same_indices_other_seed_other_indices():
    data = synthetic()
    a = build_split(data, cfg(class_index=5, anomaly_fraction=0.05, seed=11))
    b = build_split(data, cfg(class_index=5, anomaly_fraction=0.05, seed=11))
    c = build_split(data, cfg(class_index=5, anomaly_fraction=0.05, seed=12))
    np.testing.assert_array_equal(a.train.indices, b.train.indices)
    np.testing.assert_array_equal(a.val.indices, b.val.indices)
    assert not np.array_equal(a.val.indices, c.val.indices)
    assert not np.array_equal(a.train.indices[a.train.targets == 1], c.train.indices[c.train.targets == 1])


def test_split_indices_are_pinned_across_machines():
    # splitmix64 keys are pure integer arithmetic: these values must never change
    split = build_split(synthetic(), cfg(class_index=1, anomaly_fraction=0.01, seed=0))
    assert split.val.indices[:5].tolist() == PINNED_VAL_HEAD
    assert split.train.indices[split.train.targets == 1].tolist() == PINNED_ANOMALIES


PINNED_VAL_HEAD = [3, 5, 9, 10, 17]
PINNED_ANOMALIES = [34, 1075]


def test_unknown_class_is_an_error_that_lists_the_classes():
    with pytest.raises(ConfigError, match="class_index 10 is not a class of synthetic; valid: 0..9"):
        build_split(synthetic(), cfg(class_index=10))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_shapes_range_and_balance(digits):
    assert digits.train_images.shape[1:] == (1, 8, 8)
    assert len(digits.train_labels) + len(digits.test_labels) == 1797
    assert digits.train_images.max() == 16 and digits.train_images.min() == 0
    counts = digits.class_counts()
    # 30% of each class is test: the split is stratified, so every class keeps ~70/30
    for train_n, test_n in zip(counts["train"], counts["test"]):
        assert abs(test_n / (train_n + test_n) - 0.3) < 0.01
    assert min(counts["train"]) >= 120 and max(counts["train"]) <= 130


def test_digits_test_split_is_fixed(digits):
    again = load_dataset("digits")
    np.testing.assert_array_equal(digits.test_labels, again.test_labels)
    np.testing.assert_array_equal(digits.test_images, again.test_images)


def test_digits_split_tensors_are_model_ready(digits):
    split = build_split(digits, DataConfig(dataset="digits", class_index=3, anomaly_fraction=0.1))
    tensors = split_tensors(digits, split)
    for x, y in ((tensors.train_x, tensors.train_y), (tensors.val_x, tensors.val_y), (tensors.test_x, tensors.test_y)):
        assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32 and len(x) == len(y)
        assert x.min() >= -1.0 and x.max() <= 1.0
    assert tensors.test_x.min() == -1.0 and tensors.test_x.max() == 1.0  # full range used
    assert int(tensors.train_y.sum()) == split.counts()["train"]["anomalous"]
