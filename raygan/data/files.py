"""Finding data set files on disk, and checksummed downloads into a cache.

Search order: an explicit ``--data-root``, ``$RAYGAN_DATA``, known system locations
(Debian's ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``), the download
cache, and only then a download from the original sources. Files found locally are validated by
their format (the readers reject truncated or corrupt files); downloads are checked against the
MD5 sums the data sets' authors publish, because a re-compressed local copy (Debian's) has a
different archive checksum but the same content.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from raygan.core.errors import DataError

DATA_ENV = "RAYGAN_DATA"
CACHE_ENV = "RAYGAN_CACHE"
DOWNLOAD_TIMEOUT_S = 60

Found = TypeVar("Found")


def cache_dir() -> Path:
    """Where downloads go: ``$RAYGAN_CACHE``, else ``$XDG_CACHE_HOME/raygan``, else ``~/.cache/raygan``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "raygan"


@dataclass(frozen=True)
class Download:
    """One file of a data set as its authors publish it."""

    filename: str
    md5: str
    urls: tuple[str, ...]


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CorruptFile(DataError):
    """A data set file that was found but is damaged. Its message advises deleting it so that it
    is fetched again; a loader with downloads switched off raises `offline()` instead, which says
    where a good copy goes (nothing would fetch one)."""

    def __init__(self, problem: str, path: Path | str) -> None:
        self.problem, self.path = problem, Path(path)
        super().__init__(f"{problem}. Delete it so that it is fetched again, or replace it with the original file.")

    def offline(self, how_to_get: str) -> DataError:
        return DataError(
            f"{self.problem}. Downloads are off (--no-download), so nothing fetches it again: replace "
            f"{self.path} with a good copy, or put a good copy in a directory of your own and pass it with "
            f"--data-root DIR. {how_to_get}"
        )


class DownloadFailed(Exception):
    """Every mirror failed for network reasons; the caller turns this into a DataError."""


def fetch(download: Download, dest_dir: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``download`` into ``dest_dir``, trying each mirror; verify the MD5 sum.

    The file is written as ``<name>.part`` and renamed only after the checksum matched, so an
    interrupted or corrupt download never looks like a valid file.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / download.filename
    part = dest_dir / (download.filename + ".part")
    failures = []
    for url in download.urls:
        try:
            digest, size = _stream(url, part, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        if digest != download.md5:
            part.unlink(missing_ok=True)
            raise DataError(
                f"checksum mismatch after downloading {url}: MD5 {digest} ({size} bytes), expected "
                f"{download.md5}. The file was discarded. The mirror may serve a different or "
                f"damaged file; try again later, or fetch {download.filename} by hand and pass its "
                f"directory with --data-root."
            )
        part.replace(dest)
        return dest
    raise DownloadFailed("; ".join(failures))


def _stream(url: str, part: Path, timeout: float) -> tuple[str, int]:
    digest = hashlib.md5()
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
        expected = response.headers.get("Content-Length")
        while True:
            try:
                block = response.read(1 << 20)
            except http.client.IncompleteRead as exc:
                raise OSError(f"connection closed early, download truncated ({exc})") from None
            if not block:
                break
            digest.update(block)
            out.write(block)
            size += len(block)
    if expected is not None and size != int(expected):
        raise OSError(f"download truncated: got {size} of {expected} bytes")
    return digest.hexdigest(), size


@dataclass(frozen=True)
class Place:
    """A directory searched for a data set, with how it came to be searched."""

    why: str
    path: Path


@dataclass(frozen=True)
class Located(Generic[Found]):
    found: Found
    place: Place
    directory: Path


def search_places(name: str, data_root: str | None, system_dirs: Sequence[str]) -> list[Place]:
    places = []
    if data_root:
        places.append(Place("--data-root", Path(data_root).expanduser()))
    if os.environ.get(DATA_ENV):
        places.append(Place(f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    places += [Place("system location", Path(d)) for d in system_dirs]
    places.append(Place("download cache", cache_dir() / name))
    return places


def locate(
    name: str,
    finder: Callable[[Path], Found | None],
    subdirs: Sequence[str],
    system_dirs: Sequence[str],
    data_root: str | None,
    download: Callable[[Path], None] | None,
    how_to_get: str,
) -> Located[Found]:
    """Find a data set's files, downloading into the cache as the last resort.

    ``finder(dir)`` returns what it found in ``dir`` or None; each place is tried as is and with
    each of ``subdirs`` appended (e.g. ``fashion-mnist``, torchvision's ``FashionMNIST/raw``).
    """
    places = search_places(name, data_root, system_dirs)
    for place in places:
        for directory in [place.path, *(place.path / sub for sub in subdirs)]:
            if directory.is_dir():
                found = finder(directory)
                if found is not None:
                    return Located(found, place, directory)
    searched = "; ".join(f"{p.path} ({p.why})" for p in places)
    if not os.environ.get(DATA_ENV):
        searched += f"; ${DATA_ENV} is not set"
    reason = "downloads are switched off (--no-download)"
    if download is not None:
        cache = places[-1].path
        try:
            download(cache)
        except DownloadFailed as exc:
            reason = f"the download failed ({exc})"
        else:
            found = finder(cache)
            if found is not None:
                return Located(found, places[-1], cache)
            reason = f"the download into {cache} did not produce the expected files"
    raise DataError(
        f"data set {name!r} not found. Searched: {searched}; {reason}. {how_to_get} "
        f"Then pass that directory with --data-root DIR or set ${DATA_ENV}=DIR."
    )
