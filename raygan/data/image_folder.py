"""`image_folder`: one sub-folder per class, for the medical sets of papers/004 Table 3.

Layout: either ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (an official split), or
``ROOT/<class>/*``, in which case the last 10% of each class's files in alphabetical order are the
test set — the rule papers/004 §5.1 uses for LC25000 (the last 500 of 5,000 images per class).
Images are converted to grey (1 channel) or RGB (3) and resized to the model size (default
128×128, papers/004 §5) once at load time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raygan.core.errors import DataError
from raygan.data.datasets import ImageDataset, register_dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"}
FOLDER_TEST_FRACTION = 0.1
DEFAULT_SIZE = 128


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folder_names(root: Path) -> list[str]:
    """The class names the loader will use for ``root``: its sub-folders, or those of ``root/train``
    when it holds an official ``train/`` and ``test/`` split. Studies read them to find the normal
    class of a user's folder before anything is loaded."""
    official = (root / "train").is_dir() and (root / "test").is_dir()
    return [p.name for p in _class_dirs(root / "train" if official else root)]


def _image_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_images(paths: list[Path], mode: str, size: int) -> np.ndarray:
    """N×C×size×size uint8, decoded and resized as every image_folder run sees its images."""
    from PIL import Image, UnidentifiedImageError

    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img.draft(mode, (size, size))  # lets JPEG decode at reduced scale
                img = img.convert(mode).resize((size, size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(
                f"cannot read image {path}: {exc}. Remove or replace the file and run again."
            ) from None
        out[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return out


def _detect_mode(first: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(first) as img:
            return "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {first}: {exc}. Remove or replace the file.") from None


@register_dataset(
    "image_folder",
    "your images, one sub-folder per class (ROOT/<class>/ or ROOT/{train,test}/<class>/), 128x128",
    [],
)
def load_image_folder(
    data_root: str | None = None,
    download: bool = True,
    image_size: int | None = None,
    channels: int | None = None,
) -> ImageDataset:
    if not data_root:
        raise DataError("image_folder needs --data-root DIR: a folder with one sub-folder per class")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    size = image_size or DEFAULT_SIZE
    official = (root / "train").is_dir() and (root / "test").is_dir()
    split_roots = {"train": root / "train", "test": root / "test"} if official else {"all": root}

    class_names = class_folder_names(root)
    if len(class_names) < 2:
        raise DataError(
            f"image folder {split_roots.get('train', root)} has {len(class_names)} class sub-folder(s) "
            f"({', '.join(class_names) or 'none'}); anomaly detection needs at least two classes, "
            f"one sub-folder each"
        )
    if official:
        test_names = [p.name for p in _class_dirs(root / "test")]
        if test_names != class_names:
            raise DataError(
                f"class folders differ between {root / 'train'} ({', '.join(class_names)}) and "
                f"{root / 'test'} ({', '.join(test_names)})"
            )

    def listing(base: Path) -> list[list[Path]]:
        per_class = [_image_files(base / name) for name in class_names]
        for name, paths in zip(class_names, per_class):
            if not paths:
                raise DataError(
                    f"class folder {base / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        return per_class

    if official:
        train_lists, test_lists = listing(root / "train"), listing(root / "test")
    else:
        train_lists, test_lists = [], []
        for paths in listing(root):
            n_test = max(1, int(np.floor(FOLDER_TEST_FRACTION * len(paths) + 0.5)))
            if n_test >= len(paths):
                raise DataError(f"class folder {paths[0].parent} needs at least 2 images; it has {len(paths)}")
            train_lists.append(paths[:-n_test])
            test_lists.append(paths[-n_test:])

    mode = {1: "L", 3: "RGB"}.get(channels) if channels else _detect_mode(train_lists[0][0])

    def materialise(lists: list[list[Path]]) -> tuple[np.ndarray, np.ndarray]:
        paths = [p for group in lists for p in group]
        labels = np.concatenate([np.full(len(g), c, dtype=np.int64) for c, g in enumerate(lists)])
        return read_images(paths, mode, size), labels

    train_x, train_y = materialise(train_lists)
    test_x, test_y = materialise(test_lists)
    return ImageDataset(
        name="image_folder",
        class_names=class_names,
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        image_size=size,
        location=f"{root} (--data-root)",
        test_split="official (train/ and test/ folders)" if official
        else f"fixed: last {FOLDER_TEST_FRACTION:.0%} of each class folder in alphabetical order",
    )
