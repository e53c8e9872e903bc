"""IDX and CIFAR readers, the search order, and checksummed downloads against a local server."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from fixtures import CIFAR10, CIFAR100, cifar_archive_bytes, idx_gz_bytes, write_cifar_dir, write_idx_dataset
from raygan.core.errors import DataError
from raygan.data import datasets, files, load_dataset, to_model_input
from raygan.data.cifar import parse_cifar_records, read_cifar_file, write_cifar_file
from raygan.data.idx import read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / f"a{suffix}", array)
    np.testing.assert_array_equal(read_idx(tmp_path / f"a{suffix}"), array)


def test_idx_header_is_big_endian_ubyte(tmp_path):
    write_idx(tmp_path / "labels", np.array([7, 1, 3], dtype=np.uint8))
    raw = (tmp_path / "labels").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x01" and raw[4:8] == (3).to_bytes(4, "big") and raw[8:] == b"\x07\x01\x03"


@pytest.mark.parametrize(
    "damage,why",
    [
        (lambda raw: raw[:-5], "promises"),
        (lambda raw: b"\x01\x02" + raw[2:], "bad magic"),
        (lambda raw: raw[:6], "header cut short"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "element type"),
    ],
)
def test_corrupt_idx_names_the_file_and_suggests_deleting(tmp_path, damage, why):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=why) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "Delete it" in str(info.value)


def test_truncated_gzip_idx_is_reported(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(100, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx(path)


@pytest.mark.parametrize("label_bytes", [1, 2])
def test_cifar_records_round_trip(tmp_path, label_bytes):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0, 4, 9, 2, 3])
    write_cifar_file(tmp_path / "b.bin", images, labels, label_bytes)
    assert (tmp_path / "b.bin").stat().st_size == 5 * (label_bytes + 3072)
    got_images, got_labels = read_cifar_file(tmp_path / "b.bin", label_bytes)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)  # CIFAR-100: the coarse (first) byte


def test_truncated_cifar_file_is_reported(tmp_path):
    write_cifar_file(tmp_path / "test_batch.bin", np.zeros((3, 3, 32, 32)), np.zeros(3), 1)
    raw = (tmp_path / "test_batch.bin").read_bytes()
    (tmp_path / "test_batch.bin").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="test_batch.bin.*truncated"):
        read_cifar_file(tmp_path / "test_batch.bin", 1)
    with pytest.raises(DataError, match="not a whole number"):
        parse_cifar_records(b"", 1, "empty")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_datasets_load_from_data_root(tmp_path, name, compress):
    arrays = write_idx_dataset(tmp_path / "root", compress=compress)
    dataset = load_dataset(name, data_root=str(tmp_path / "root"), download=False)
    assert dataset.train_images.shape == (60, 1, 28, 28) and dataset.test_images.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(dataset.train_labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(dataset.test_images[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert "--data-root" in dataset.location and dataset.image_size == 32


def test_torchvision_layout_is_found(tmp_path):
    write_idx_dataset(tmp_path / "root" / "FashionMNIST" / "raw")
    dataset = load_dataset("fashion_mnist", data_root=str(tmp_path / "root"), download=False)
    assert "FashionMNIST/raw" in dataset.location


def test_search_order_data_root_then_env_then_cache(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "explicit", n_train_per_class=3)
    write_idx_dataset(tmp_path / "env", n_train_per_class=4)
    write_idx_dataset(tmp_path / "cache" / "mnist", n_train_per_class=5)
    monkeypatch.setenv("RAYGAN_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", data_root=str(tmp_path / "explicit"), download=False).train_labels) == 30
    assert len(load_dataset("mnist", download=False).train_labels) == 40
    monkeypatch.delenv("RAYGAN_DATA")
    assert len(load_dataset("mnist", download=False).train_labels) == 50
    # a --data-root without the files falls through to the next place
    assert len(load_dataset("mnist", data_root=str(tmp_path / "empty"), download=False).train_labels) == 50


@pytest.mark.parametrize("layout,name", [(CIFAR10, "cifar10"), (CIFAR100, "cifar100")])
def test_cifar_loads_from_extracted_dir_and_archive(tmp_path, layout, name):
    write_cifar_dir(tmp_path / "extracted", layout)
    from_dir = load_dataset(name, data_root=str(tmp_path / "extracted"), download=False)
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / layout.archive).write_bytes(cifar_archive_bytes(layout))
    from_archive = load_dataset(name, data_root=str(tmp_path / "archive"), download=False)
    classes = 10 if name == "cifar10" else 20
    n_train = 2 * classes * len(layout.train_files)
    assert from_dir.train_images.shape == (n_train, 3, 32, 32)
    assert from_dir.test_images.shape == (2 * classes, 3, 32, 32)
    assert from_dir.num_classes == classes
    np.testing.assert_array_equal(from_dir.train_images, from_archive.train_images)
    np.testing.assert_array_equal(from_dir.test_labels, from_archive.test_labels)
    assert sorted(np.unique(from_dir.train_labels)) == list(range(classes))


def test_cifar100_uses_the_twenty_coarse_classes_of_table_6():
    spec = datasets.DATASETS.get("cifar100")
    assert len(spec.class_names) == 20
    assert spec.class_names[0] == "aquatic mammals" and spec.class_names[19] == "vehicles 2"


def _serve_idx(http_server, dataset, mirror_path="/mnist/"):
    payloads = {}
    for base in datasets.IDX_FILES:
        rng = np.random.default_rng(len(base))
        shape = (20, 28, 28) if "images" in base else (20,)
        array = rng.integers(0, 10, shape, dtype=np.uint8)
        payloads[base + ".gz"] = idx_gz_bytes(array)
        http_server.files[mirror_path + base + ".gz"] = payloads[base + ".gz"]
    md5s = {name: hashlib.md5(body).hexdigest() for name, body in payloads.items()}
    return md5s


def test_download_from_local_mirror(http_server, monkeypatch, tmp_path):
    md5s = _serve_idx(http_server, "mnist")
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("http://127.0.0.1:9/unreachable/", http_server.url + "/mnist/"))
    monkeypatch.setattr(datasets, "MNIST_MD5", md5s)
    dataset = load_dataset("mnist")
    assert len(dataset.train_labels) == 20 and "download cache" in dataset.location
    for name, md5 in md5s.items():
        assert files.md5_of(tmp_path / "cache" / "mnist" / name) == md5
    # the second load finds the cached files without asking the server again
    before = len(http_server.requests)
    load_dataset("mnist")
    assert len(http_server.requests) == before


def test_checksum_mismatch_after_download_is_an_error(http_server, monkeypatch, tmp_path):
    md5s = _serve_idx(http_server, "mnist")
    md5s["train-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (http_server.url + "/mnist/",))
    monkeypatch.setattr(datasets, "MNIST_MD5", md5s)
    with pytest.raises(DataError, match="checksum mismatch.*train-images-idx3-ubyte.gz.*expected 0{32}"):
        load_dataset("mnist")
    leftovers = list((tmp_path / "cache" / "mnist").glob("train-images*"))
    assert leftovers == []  # neither the bad file nor a .part is kept


def test_truncated_download_is_not_kept(http_server, tmp_path):
    body = bytes(range(256)) * 400
    http_server.files["/f.bin"] = body
    http_server.truncate.add("/f.bin")
    item = files.Download("f.bin", hashlib.md5(body).hexdigest(), (http_server.url + "/f.bin",))
    with pytest.raises(files.DownloadFailed, match="truncated|closed early|IncompleteRead"):
        files.fetch(item, tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_cifar_download_extracts_and_verifies(http_server, monkeypatch, tmp_path):
    archive = cifar_archive_bytes(CIFAR10)
    http_server.files["/kriz/" + CIFAR10.archive] = archive
    layout = datasets.CifarLayout(**{**CIFAR10.__dict__, "md5": hashlib.md5(archive).hexdigest()})
    monkeypatch.setattr(datasets, "CIFAR10", layout)
    monkeypatch.setattr(datasets, "CIFAR_MIRRORS", (http_server.url + "/kriz/",))
    dataset = load_dataset("cifar10")
    assert dataset.train_images.shape == (100, 3, 32, 32)
    extracted = tmp_path / "cache" / "cifar10" / CIFAR10.member_dir
    assert sorted(p.name for p in extracted.iterdir()) == sorted(CIFAR10.members)


def test_offline_error_names_places_and_how_to_get_files(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))  # nothing listens on port 9
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_root=str(tmp_path / "nowhere"))
    message = str(info.value)
    for expected in ("'mnist' not found", str(tmp_path / "nowhere"), "download failed", "--data-root", "RAYGAN_DATA"):
        assert expected in message
    assert "\n" not in message  # one paragraph


def test_corrupt_file_in_cache_is_reported_with_its_path(tmp_path):
    # (mnist: fashion_mnist would be found first in the Debian system location)
    write_idx_dataset(tmp_path / "cache" / "mnist")
    path = tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz") as offline:
        load_dataset("mnist", download=False)
    # nothing would fetch it again: say where a good copy goes instead
    assert "fetched again" not in str(offline.value)
    assert f"Downloads are off (--no-download), so nothing fetches it again: replace {path} with a good copy" \
        in str(offline.value) and "--data-root DIR" in str(offline.value)


def test_model_input_is_resized_and_scaled():
    images = np.array([[[[0, 255], [255, 0]]]], dtype=np.uint8)
    x = to_model_input(images, 255, 32)
    assert x.shape == (1, 1, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    same = to_model_input(np.full((2, 3, 32, 32), 255, np.uint8), 255, 32)
    assert torch.equal(same, torch.ones(2, 3, 32, 32))
