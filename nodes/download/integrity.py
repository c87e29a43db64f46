"""File integrity for the download node: sha256 against the hub, a cache of files already checked, and
partial files that are never followed through a symbolic link.

* The hub publishes each LFS file's sha256 (its LFS oid): ``get_hf_file_metadata`` reports it as the
  ETag (``X-Linked-Etag``), ``HfApi.get_paths_info`` as ``lfs.sha256``. A download is hashed before it
  gets its final name; a mismatch deletes it.
* A file already in the models folder is hashed once; the result is kept by size and modification time
  in :data:`CACHE_NAME` in that folder (the node writes nothing outside the model folders).
* A partial download is opened with ``O_NOFOLLOW`` after an ``lstat`` check: a symbolic link planted
  under its name is removed (the file it points to is never written), anything else that is not a
  regular file is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

CACHE_NAME = ".dynamicrafter_verified.json"
ALLOW_UNVERIFIED_ENV = "DYNAMICRAFTER_ALLOW_UNVERIFIED_DOWNLOADS"
"""Set to 1 to accept files for which the hub reports no sha256 (a mirror that hides it); off by default."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 8 * 2**20
_MAX_CACHE_BYTES = 2**20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class IntegrityError(OSError):
    """A file whose bytes are not the hub's, or a path that is not a plain file; the message says what to do."""

    __module__ = "dynamicrafter"  # as ComfyUI shows the type: never the install path


def as_sha256(value: str | None) -> str | None:
    """``value`` (an ETag or LFS oid, quotes and case ignored) when it is a sha256, else None."""
    text = (value or "").strip().strip('"').lower()
    if text.startswith("w/"):
        return None  # a weak ETag is a git blob id, not the content hash
    return text if _SHA256.fullmatch(text) else None


def allow_unverified() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in ("1", "true", "yes")


def file_sha256(path: Path, check_cancel: Callable[[], None], follow_links: bool = True) -> str:
    """The sha256 of a file, read in chunks; ``check_cancel`` runs between chunks (Cancel stops it)."""
    flags = os.O_RDONLY | _BINARY | (0 if follow_links else _NOFOLLOW)
    digest = hashlib.sha256()
    with os.fdopen(os.open(path, flags), "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            check_cancel()
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# Files verified once
# --------------------------------------------------------------------------------------------------


class VerifiedFiles:
    """``{file name: {size, mtime_ns, sha256}}`` in the models folder: a file whose size and modification
    time are unchanged since it was hashed is not hashed again."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CACHE_NAME
        self._entries = self._load()

    def _load(self) -> dict[str, dict]:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return {}
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_CACHE_BYTES:
            log.warning("DynamiCrafter download: ignoring %s (not a small regular file)", self.path)
            return {}
        try:
            with os.fdopen(os.open(self.path, os.O_RDONLY | _NOFOLLOW), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as error:
            log.warning("DynamiCrafter download: ignoring unreadable %s (%s)", self.path, error)
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def known_sha256(self, name: str, path: Path) -> str | None:
        """The sha256 recorded for ``name`` if the file still has the size and mtime it had then."""
        entry = self._entries.get(name)
        info = path.stat()
        if entry and entry.get("size") == info.st_size and entry.get("mtime_ns") == info.st_mtime_ns:
            return as_sha256(entry.get("sha256"))
        return None

    def remember(self, name: str, path: Path, sha256: str) -> None:
        info = path.stat()
        self._entries[name] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": sha256}
        temporary = self.path.with_name(f"{CACHE_NAME}.{os.getpid()}.tmp")
        try:
            with create_new(temporary) as handle:
                handle.write(json.dumps(self._entries, indent=1, sort_keys=True).encode("utf-8"))
            os.replace(temporary, self.path)
        except OSError as error:  # a read-only folder: the file is verified again next time
            log.warning("DynamiCrafter download: could not record the check in %s (%s)", self.path, error)
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)


def verify(
    path: Path,
    expected: str,
    source: str,
    check_cancel: Callable[[], None],
    follow_links: bool = True,
    remember: bool = True,
) -> None:
    """Raise :class:`IntegrityError` unless ``path`` hashes to ``expected`` (``source``: where it came from).
    A file checked before (same size and mtime) is not read again; a good one is remembered (``remember``)."""
    verified = VerifiedFiles(path.parent)
    found = verified.known_sha256(path.name, path)
    if found is None:
        log.info("DynamiCrafter download: checking the sha256 of %s", path)
        found = file_sha256(path, check_cancel, follow_links)
    if found != expected:
        verified.forget(path.name)
        raise IntegrityError(
            f"{path.name} does not have the hub's content: its sha256 is {found}, {source} has {expected}."
        )
    if remember:
        verified.remember(path.name, path, found)


# --------------------------------------------------------------------------------------------------
# Partial files
# --------------------------------------------------------------------------------------------------


def partial_size(path: Path) -> int:
    """Bytes already in the partial file ``path`` (0 if none). A symbolic link under that name is removed
    (never followed); a folder or device there is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(info.st_mode):
        log.warning(
            "DynamiCrafter download: %s is a symbolic link; removed it (partial downloads never follow "
            "links) and starting again",
            path,
        )
        os.unlink(path)
        return 0
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError(f"{path} is not a regular file; remove it, then run the node again.")
    return info.st_size


def create_new(path: Path) -> BinaryIO:
    """A new file opened for writing; fails if anything (a link included) already has that name."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o644), "wb")


def open_partial(path: Path, resume: bool) -> BinaryIO:
    """The partial file for writing at its end: the existing one when resuming, else a new one. Never
    through a symbolic link, and only a regular file."""
    if not resume:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return create_new(path)
    handle = os.fdopen(os.open(path, os.O_RDWR | _NOFOLLOW | _BINARY), "r+b")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise IntegrityError(f"{path} is not a regular file; remove it, then run the node again.")
    handle.seek(0, os.SEEK_END)
    return handle


def hub_sha256(repo_id: str, filename: str, revision: str, endpoint: str) -> str | None:
    """The file's LFS sha256 from the hub's paths-info API (when the metadata's ETag is not one), or None."""
    from huggingface_hub import HfApi

    try:
        infos = HfApi(endpoint=endpoint).get_paths_info(repo_id, [filename], revision=revision)
    except Exception as error:  # noqa: BLE001 - any failure means no hash; the caller refuses the file
        log.warning("DynamiCrafter download: the hub's file list for %s gave no sha256 (%s)", repo_id, error)
        return None
    for info in infos:
        sha = as_sha256(getattr(getattr(info, "lfs", None), "sha256", None))
        if sha and getattr(info, "path", filename) == filename:
            return sha
    return None
