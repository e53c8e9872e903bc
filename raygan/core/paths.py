"""Checks of the paths a command will write, made before it does anything that costs time or leaves
something behind (loading data, training, scoring, starting Ray): a file where a folder is wanted,
a folder where a file is wanted, a read-only or missing place are one line naming the flag."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from raygan.core.errors import RayganError


def _probe(directory: Path, flag: str, path: Path) -> None:
    """Create and remove a file in ``directory``: permission bits do not stop root, a read-only
    file system or a full inode table does."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".raygan-probe-"):
            pass
    except OSError as exc:
        raise RayganError(f"{flag} {path}: cannot write in {directory} ({exc.strerror or exc}); "
                          f"choose a writable place") from None


def _existing_ancestor(path: Path, flag: str, original: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RayganError(f"{flag} {original}: {parent} is a file, not a directory")
            return parent
    return Path(os.sep)


def check_output_dir(path: Path | str, flag: str, what: str = "a directory") -> Path:
    """``path`` is a directory raygan may create and write into; returns it expanded."""
    original = Path(path)
    path = original.expanduser()
    if path.exists():
        if not path.is_dir():
            raise RayganError(f"{flag} {original} is a file; it must be {what} (give a new or existing folder)")
        _probe(path, flag, original)
    else:
        _probe(_existing_ancestor(path, flag, original), flag, original)
    return path


def check_output_file(path: Path | str, flag: str) -> Path:
    """``path`` is a file raygan may write (replacing it) in an existing, writable directory."""
    original = Path(path)
    path = original.expanduser()
    if path.is_dir():
        raise RayganError(f"{flag} {original} is a directory; give a file name")
    parent = path.parent
    if not parent.exists():
        raise RayganError(f"{flag} {original}: directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise RayganError(f"{flag} {original}: {parent} is a file, not a directory")
    _probe(parent, flag, original)
    return path


def free_space(path: Path) -> str:
    """Free space of the file system holding ``path`` (or its nearest existing parent), for messages."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "free space unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit} free" if unit == "bytes" else f"{free:.1f} {unit} free"
        free /= 1024
    return ""


# The errnos of a full disk (or a full quota): the study stops and says where, instead of failing trials.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
