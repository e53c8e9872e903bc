"""Small data sets written in the real on-disk formats (IDX, CIFAR binary), for tests."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np

from raygan.data.cifar import write_cifar_file
from raygan.data.datasets import CIFAR10, CIFAR100, IDX_FILES, CifarLayout
from raygan.data.idx import write_idx


def labelled_images(n_per_class: int, classes: int, shape: tuple[int, ...], seed: int):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 256, size=(len(labels), *shape), dtype=np.uint8)
    # make images depend on the class so that a label/image mix-up would be visible
    images[:, ..., 0] = labels[(...,) + (None,) * (len(shape) - 1)] * 20
    return images, labels


def write_idx_dataset(directory: Path, n_train_per_class=6, n_test_per_class=2, compress=True) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    train_x, train_y = labelled_images(n_train_per_class, 10, (28, 28), seed=1)
    test_x, test_y = labelled_images(n_test_per_class, 10, (28, 28), seed=2)
    suffix = ".gz" if compress else ""
    arrays = dict(zip(IDX_FILES, (train_x, train_y, test_x, test_y)))
    for base, array in arrays.items():
        write_idx(directory / f"{base}{suffix}", array)
    return arrays


def idx_gz_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        gz.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return buffer.getvalue()


def cifar_arrays(layout: CifarLayout, n_per_class: int, seed: int):
    classes = 10 if layout is CIFAR10 else 20
    return labelled_images(n_per_class, classes, (3, 32, 32), seed)


def write_cifar_dir(directory: Path, layout: CifarLayout, n_per_class=2) -> Path:
    out = directory / layout.member_dir
    out.mkdir(parents=True, exist_ok=True)
    for i, member in enumerate(layout.members):
        images, labels = cifar_arrays(layout, n_per_class, seed=10 + i)
        write_cifar_file(out / member, images, labels, layout.label_bytes)
    return out


def cifar_archive_bytes(layout: CifarLayout, n_per_class=2) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i, member in enumerate(layout.members):
            images, labels = cifar_arrays(layout, n_per_class, seed=10 + i)
            tmp = io.BytesIO()
            cols = [labels[:, None].astype(np.uint8)]
            if layout.label_bytes == 2:
                cols.append((labels * 5)[:, None].astype(np.uint8))
            tmp.write(np.concatenate(cols + [images.reshape(len(images), -1)], axis=1).tobytes())
            info = tarfile.TarInfo(f"{layout.member_dir}/{member}")
            info.size = tmp.tell()
            tmp.seek(0)
            tar.addfile(info, tmp)
    return buffer.getvalue()


__all__ = ["CIFAR10", "CIFAR100", "cifar_archive_bytes", "idx_gz_bytes", "write_cifar_dir", "write_idx_dataset"]


def run_source_probe_study(storage: Path, max_failures: int = 0) -> tuple[Path, dict[str, dict]]:
    """A two-trial study on the running Ray whose second trial fails inside the trial: anomaly_source
    "0" names the normal class itself, which only the data split finds out. Returns the study
    directory and its result rows by the factor value ("all" | "0")."""
    import pyarrow.parquet as pq

    from raygan.analysis.parquet import write_results
    from raygan.study import Factor, Profile, Study, expand, study_hash
    from raygan.tune.driver import run_plan
    from raygan.tune.plan import Plan, RunOptions

    broken = Study(
        name="source_probe", reproduces="test", caption="", base={"method": "autoencoder",
                                                                   "model": {"backbone": "naive", "latent_size": 8}},
        factors=(Factor("source", ("all", "0"), key="data.anomaly_source"),),
        profiles={"smoke": Profile(datasets=("digits",), classes={"digits": (0,)}, seeds=(0,), epochs=1,
                                   overrides={"train": {"batch_size": 32}})},
    )
    trials = expand(broken, broken.profile("smoke"))
    plan = Plan(broken, "smoke", study_hash(broken, "smoke", trials, None), trials=tuple(trials), epochs=1)
    study_dir = run_plan(plan, RunOptions(storage=storage, max_failures=max_failures))
    write_results(study_dir)
    rows = {r["factor.source"]: r for r in pq.read_table(study_dir / "results.parquet").to_pylist()}
    return study_dir, rows
