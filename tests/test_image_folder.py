"""The image-folder reader (medical sets of papers/004 Table 3) on real PNG/JPEG files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from raygan.core.errors import DataError
from raygan.data import load_dataset


def write_images(directory, n, mode="L", size=(40, 30), value=0):
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape = size[::-1] if mode == "L" else (*size[::-1], 3)
        Image.fromarray(np.full(shape, value + i, np.uint8), mode).save(directory / f"img{i:03d}.png")


def test_flat_layout_holds_out_the_last_tenth_alphabetically(tmp_path):
    write_images(tmp_path / "normal", 20, value=10)
    write_images(tmp_path / "pneumonia", 10, value=100)
    (tmp_path / "normal" / "notes.txt").write_text("ignored: not an image")
    data = load_dataset("image_folder", data_root=str(tmp_path))
    assert data.class_names == ["normal", "pneumonia"]
    assert data.train_images.shape == (27, 1, 128, 128)
    assert data.class_counts() == {"train": [18, 9], "test": [2, 1]}
    # the test images are the alphabetically last ones (img018, img019 of "normal")
    assert sorted(np.unique(data.test_images[data.test_labels == 0])) == [28, 29]


def test_train_test_layout_rgb_and_size(tmp_path):
    for part, n in (("train", 4), ("test", 2)):
        write_images(tmp_path / part / "benign", n, mode="RGB")
        write_images(tmp_path / part / "aca", n, mode="RGB")
    data = load_dataset("image_folder", data_root=str(tmp_path), image_size=64)
    assert data.train_images.shape == (8, 3, 64, 64) and data.test_images.shape == (4, 3, 64, 64)
    assert data.test_split.startswith("official") and data.image_size == 64


def test_fewer_than_two_classes_is_an_error(tmp_path):
    write_images(tmp_path / "only", 5)
    with pytest.raises(DataError, match="1 class sub-folder.*at least two"):
        load_dataset("image_folder", data_root=str(tmp_path))


def test_unreadable_image_is_named(tmp_path):
    write_images(tmp_path / "a", 3)
    write_images(tmp_path / "b", 3)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot read image .*b/broken.png"):
        load_dataset("image_folder", data_root=str(tmp_path))


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("image_folder", data_root=str(tmp_path / "absent"))
