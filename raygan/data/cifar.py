"""Reader for the binary version of CIFAR-10 and CIFAR-100 (Krizhevsky 2009).

Each record is the label byte(s) followed by 3072 bytes of a 32x32 RGB image in channel-major
order. CIFAR-10 has one label byte; CIFAR-100 has two, coarse (the 20 superclasses that AGAD
uses, papers/004 Table 6) then fine. The binary version avoids unpickling downloaded files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raygan.core.errors import DataError
from raygan.data.files import CorruptFile

IMAGE_BYTES = 3 * 32 * 32


def parse_cifar_records(raw: bytes, label_bytes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split raw records into (images uint8 N×3×32×32, labels from the first label byte)."""
    record = label_bytes + IMAGE_BYTES
    if len(raw) == 0 or len(raw) % record:
        raise CorruptFile(
            f"{name} is not a valid CIFAR binary file: {len(raw)} bytes is not a whole number of "
            f"{record}-byte records (corrupt or truncated)", name.split(":")[0]  # an archive's member: the archive
        )
    table = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = table[:, 0].astype(np.int64)
    images = table[:, label_bytes:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def read_cifar_file(path: str | Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return parse_cifar_records(raw, label_bytes, str(path))


def write_cifar_file(path: str | Path, images: np.ndarray, labels: np.ndarray, label_bytes: int) -> None:
    """Write records in the CIFAR binary layout (tests build small real-format files with it).

    For CIFAR-100 (two label bytes) ``labels`` is the coarse label; the fine label byte is
    written as ``labels * 5`` so that it is a plausible value.
    """
    images = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), IMAGE_BYTES)
    label_cols = [np.asarray(labels, dtype=np.uint8)[:, None]]
    if label_bytes == 2:
        label_cols.append((np.asarray(labels, dtype=np.uint8) * 5)[:, None])
    Path(path).write_bytes(np.concatenate(label_cols + [images], axis=1).tobytes())
