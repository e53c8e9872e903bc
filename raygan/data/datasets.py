"""The data sets of the AGAD paper, by registry name.

Each loader returns an `ImageDataset`: uint8 images at their stored resolution plus integer class
labels, for an official train and test split. Conversion to model input (resize to the model
size, scale to [-1, 1] for the generators' tanh output, papers/004 §4.1) happens once per split
in `to_model_input`, on whole tensors, so nothing per-sample runs on the training hot path.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raygan.core.errors import DataError
from raygan.core.registry import Registry
from raygan.data import files
from raygan.data.cifar import parse_cifar_records, read_cifar_file
from raygan.data.files import Download
from raygan.data.idx import read_idx
from raygan.data.splitmix import keyed_order


@dataclass
class ImageDataset:
    """A labelled image data set with an official (or fixed, documented) train/test split."""

    name: str
    class_names: list[str]
    train_images: np.ndarray  # uint8, N×C×H×W
    train_labels: np.ndarray  # int64, N
    test_images: np.ndarray
    test_labels: np.ndarray
    image_size: int  # the side length models see by default
    location: str  # where the files were found, for `raygan data describe`
    test_split: str = "official"
    max_value: int = 255  # pixel value that maps to +1

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> dict[str, list[int]]:
        k = self.num_classes
        return {
            "train": np.bincount(self.train_labels, minlength=k).tolist(),
            "test": np.bincount(self.test_labels, minlength=k).tolist(),
        }


def to_model_input(images: np.ndarray, max_value: int, image_size: int) -> torch.Tensor:
    """uint8 N×C×H×W -> float32 in [-1, 1] at ``image_size``×``image_size`` (bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).mul_(2.0 / max_value).sub_(1.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        out = torch.empty(len(x), x.shape[1], image_size, image_size)
        for start in range(0, len(x), 8192):  # chunks bound the peak memory of interpolate
            chunk = x[start : start + 8192]
            out[start : start + 8192] = F.interpolate(
                chunk, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        x = out.clamp_(-1.0, 1.0)
    return x


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one registered data set."""

    name: str
    description: str
    class_names: list[str] = field(repr=False)
    loader: Callable[..., ImageDataset] = field(repr=False)

    def load(self, data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
        return self.loader(data_root=data_root, download=download, **options)


DATASETS: Registry[DatasetSpec] = Registry("data set")


def register_dataset(name: str, description: str, class_names: list[str]):
    def decorator(loader: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        DATASETS.add(name, DatasetSpec(name, description, class_names, loader))
        return loader

    return decorator


def load_dataset(name: str, data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
    return DATASETS.get(name).load(data_root=data_root, download=download, **options)


def _no_options(name: str, options: dict) -> None:
    if options:
        raise DataError(f"data set {name!r} takes no option {sorted(options)[0]!r}")


# --- digits: scikit-learn's bundled 8×8 handwritten digits (offline) -------------------------

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 20_240_601  # fixed: the digits test split never depends on a run's seed


@register_dataset(
    "digits",
    "scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline); fixed seeded test split",
    [str(i) for i in range(10)],
)
def load_digits(data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
    _no_options("digits", options)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # values 0..16
    labels = bunch.target.astype(np.int64)
    # No official test split: per class, the last 30% in a seeded (splitmix64) order are test.
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        order = idx[keyed_order(DIGITS_SPLIT_SEED, "digits-test", idx)]
        n_test = int(np.floor(DIGITS_TEST_FRACTION * len(idx) + 0.5))
        test[order[len(order) - n_test :]] = True
    return ImageDataset(
        name="digits",
        class_names=[str(i) for i in range(10)],
        train_images=images[~test],
        train_labels=labels[~test],
        test_images=images[test],
        test_labels=labels[test],
        image_size=32,
        location="scikit-learn package (sklearn.datasets.load_digits)",
        test_split=f"fixed: last {DIGITS_TEST_FRACTION:.0%} of each class in splitmix64 order, seed {DIGITS_SPLIT_SEED}",
        max_value=16,
    )


# --- MNIST and Fashion-MNIST: IDX files -----------------------------------------------------

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASSES = [  # papers/004 Table 6
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    found = {}
    for base in IDX_FILES:
        for candidate in (directory / f"{base}.gz", directory / base):
            if candidate.is_file():
                found[base] = candidate
                break
        else:
            return None
    return found


def downloads_from(mirrors: tuple[str, ...], md5s: dict[str, str]) -> list[Download]:
    return [Download(name, md5, tuple(m + name for m in mirrors)) for name, md5 in md5s.items()]


def _download_all(downloads: list[Download]) -> Callable[[Path], None]:
    def run(cache: Path) -> None:
        for item in downloads:
            if not (cache / item.filename).is_file():
                files.fetch(item, cache)

    return run


def _load_idx_dataset(
    name: str, class_names: list[str], located: files.Located[dict[str, Path]]
) -> ImageDataset:
    paths = located.found
    train_x, train_y = read_idx(paths[IDX_FILES[0]]), read_idx(paths[IDX_FILES[1]])
    test_x, test_y = read_idx(paths[IDX_FILES[2]]), read_idx(paths[IDX_FILES[3]])
    for images, labels, kind in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise files.CorruptFile(
                f"{name}: {kind} images {images.shape} and labels {labels.shape} in {located.directory} "
                f"do not match; the files are corrupt or from different data sets", paths[IDX_FILES[0 if kind == "train" else 2]]
            )
        if labels.max(initial=0) >= len(class_names):
            raise DataError(f"{name}: label {labels.max()} in {located.directory} is out of range")
    return ImageDataset(
        name=name,
        class_names=class_names,
        train_images=train_x[:, None],
        train_labels=train_y.astype(np.int64),
        test_images=test_x[:, None],
        test_labels=test_y.astype(np.int64),
        image_size=32,  # papers/004 §4.1: MNIST and F-MNIST resized from 28 to 32
        location=f"{located.directory} ({located.place.why})",
    )


@register_dataset("mnist", "MNIST handwritten digits, 28x28 resized to 32x32 (download)", [str(i) for i in range(10)])
def load_mnist(data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
    _no_options("mnist", options)
    downloads = downloads_from(MNIST_MIRRORS, MNIST_MD5)
    located = files.locate(
        "mnist",
        find_idx_files,
        subdirs=("mnist", "MNIST/raw"),
        system_dirs=("/usr/share/datasets/mnist",),
        data_root=data_root,
        download=_download_all(downloads) if download else None,
        how_to_get=f"Get the four IDX files ({', '.join(MNIST_MD5)}) from {MNIST_MIRRORS[0]}.",
    )
    return _offline_advice(lambda: _load_idx_dataset("mnist", [str(i) for i in range(10)], located), download,
                           f"Get the four IDX files ({', '.join(MNIST_MD5)}) from {MNIST_MIRRORS[0]}.")


@register_dataset(
    "fashion_mnist",
    "Fashion-MNIST (Zalando), 28x28 resized to 32x32; Debian package dataset-fashion-mnist",
    FASHION_CLASSES,
)
def load_fashion_mnist(data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
    _no_options("fashion_mnist", options)
    downloads = downloads_from(FASHION_MIRRORS, FASHION_MD5)
    located = files.locate(
        "fashion_mnist",
        find_idx_files,
        subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        data_root=data_root,
        download=_download_all(downloads) if download else None,
        how_to_get=(
            "Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or get the "
            f"four IDX files ({', '.join(FASHION_MD5)}) from {FASHION_MIRRORS[0]}."
        ),
    )
    return _offline_advice(lambda: _load_idx_dataset("fashion_mnist", FASHION_CLASSES, located), download,
                           f"Get the four IDX files ({', '.join(FASHION_MD5)}) from {FASHION_MIRRORS[0]}.")


# --- CIFAR-10 and CIFAR-100 (binary version) -------------------------------------------------

CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_COARSE_CLASSES = [  # papers/004 Table 6: the 20 superclasses
    "aquatic mammals", "fish", "flowers", "food containers", "fruit and vegetables",
    "household electrical devices", "household furniture", "insects", "large carnivores",
    "large man-made outdoor things", "large natural outdoor scenes", "large omnivores and herbivores",
    "medium-sized mammals", "non-insect invertebrates", "people", "reptiles", "small mammals",
    "trees", "vehicles 1", "vehicles 2",
]


@dataclass(frozen=True)
class CifarLayout:
    name: str
    archive: str
    md5: str
    member_dir: str  # the directory inside the archive
    train_files: tuple[str, ...]
    test_file: str
    label_bytes: int  # CIFAR-100 records start with the coarse then the fine label

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file)


CIFAR10 = CifarLayout(
    "cifar10", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin",
    tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", 1,
)
CIFAR100 = CifarLayout(
    "cifar100", "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary",
    ("train.bin",), "test.bin", 2,
)


def _cifar_finder(layout: CifarLayout) -> Callable[[Path], Path | None]:
    """Finds the extracted member directory, or the archive itself (read without extracting)."""

    def find(directory: Path) -> Path | None:
        for candidate in (directory / layout.member_dir, directory):
            if all((candidate / m).is_file() for m in layout.members):
                return candidate
        archive = directory / layout.archive
        return archive if archive.is_file() else None

    return find


def _cifar_download(layout: CifarLayout) -> Callable[[Path], None]:
    def run(cache: Path) -> None:
        archive = files.fetch(
            Download(layout.archive, layout.md5, tuple(m + layout.archive for m in CIFAR_MIRRORS)), cache
        )
        # Extract only the expected members, by name, so a crafted archive cannot write elsewhere;
        # the checksum was verified, so the archive is the authors' own.
        out = cache / layout.member_dir
        out.mkdir(parents=True, exist_ok=True)
        for member, data in _read_cifar_archive(archive, layout).items():
            (out / member).write_bytes(data)
        archive.unlink()

    return run


def _read_cifar_archive(archive: Path, layout: CifarLayout) -> dict[str, bytes]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            result = {}
            for member in layout.members:
                handle = tar.extractfile(f"{layout.member_dir}/{member}")
                if handle is None:
                    raise KeyError(member)
                result[member] = handle.read()
            return result
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        raise files.CorruptFile(
            f"{archive} is not a valid {layout.name} archive ({exc}); it is corrupt or truncated", archive
        ) from None


def _offline_advice(load: Callable[[], ImageDataset], download: bool, how_to_get: str) -> ImageDataset:
    """Run ``load``; with downloads off, a damaged file's advice says where a good copy goes
    instead of "delete it so that it is fetched again"."""
    try:
        return load()
    except files.CorruptFile as exc:
        if download:
            raise
        raise exc.offline(how_to_get) from None


def _load_cifar(layout: CifarLayout, class_names: list[str], data_root: str | None, download: bool) -> ImageDataset:
    return _offline_advice(lambda: _read_cifar(layout, class_names, data_root, download), download,
                           f"Get {layout.archive} (the binary version, MD5 {layout.md5}) from {CIFAR_MIRRORS[0]}.")


def _read_cifar(layout: CifarLayout, class_names: list[str], data_root: str | None, download: bool) -> ImageDataset:
    located = files.locate(
        layout.name,
        _cifar_finder(layout),
        subdirs=(layout.name, "cifar"),
        system_dirs=(f"/usr/share/datasets/{layout.name}",),
        data_root=data_root,
        download=_cifar_download(layout) if download else None,
        how_to_get=(
            f"Get {layout.archive} (the binary version, MD5 {layout.md5}) from {CIFAR_MIRRORS[0]} "
            f"and put the archive or its extracted {layout.member_dir}/ directory in one of those places."
        ),
    )
    found = located.found
    if found.is_file():
        raw = _read_cifar_archive(found, layout)
        parts = {m: parse_cifar_records(raw[m], layout.label_bytes, f"{found}:{m}") for m in layout.members}
    else:
        parts = {m: read_cifar_file(found / m, layout.label_bytes) for m in layout.members}
    train = [parts[m] for m in layout.train_files]
    train_x = np.concatenate([p[0] for p in train])
    train_y = np.concatenate([p[1] for p in train])
    test_x, test_y = parts[layout.test_file]
    for labels, where in ((train_y, "train"), (test_y, "test")):
        if labels.max(initial=0) >= len(class_names):
            raise files.CorruptFile(
                f"{layout.name}: {where} label {labels.max()} out of range in {found}; the file is "
                f"corrupt or not {layout.name}", found
            )
    return ImageDataset(
        name=layout.name,
        class_names=class_names,
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        image_size=32,
        location=f"{found} ({located.place.why})",
    )


@register_dataset("cifar10", "CIFAR-10, 32x32 RGB, 10 classes (download, binary version)", CIFAR10_CLASSES)
def load_cifar10(data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
    _no_options("cifar10", options)
    return _load_cifar(CIFAR10, CIFAR10_CLASSES, data_root, download)


@register_dataset(
    "cifar100",
    "CIFAR-100 with its 20 coarse superclasses as classes (papers/004 Table 6; download, binary version)",
    CIFAR100_COARSE_CLASSES,
)
def load_cifar100(data_root: str | None = None, download: bool = True, **options) -> ImageDataset:
    _no_options("cifar100", options)
    return _load_cifar(CIFAR100, CIFAR100_COARSE_CLASSES, data_root, download)


# image_folder registers itself on import (kept in its own module: it needs Pillow).
from raygan.data import image_folder as _image_folder  # noqa: E402,F401
