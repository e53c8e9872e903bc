"""Atomic file writes: a crash mid-write, or a reader at the same moment, never sees half a file.

Each write goes to a temporary file in the target's own directory (a rename is atomic only within
one file system), is flushed to disk, then renamed over the target. Temporary names are unique
per write, so two writers (a study's driver and a `raygan report` rebuilding the Parquet files)
never share one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, it replaces
    ``path``. On error the temporary file is removed and ``path`` is left as it was.
    ``suffix`` is for writers that insist on an extension (np.savez appends .npz otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and ending in the suffix: globs of the real files (rows/*.json) never match it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk; not possible everywhere
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
