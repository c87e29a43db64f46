"""Which local files the batch client may upload: pictures it has opened as such, inside the batch's own folder.

A CSV is input like any other (it may come from someone else): an ``image`` column naming ``/etc/passwd``,
``../../secret``, a link out of the folder or ``/proc/self/environ`` must not put that file on a server. A
file is uploaded only when its real path (links followed) lies in the batch's folder tree (the ``--images``
folder, or the CSV's own folder) unless the user allows files elsewhere, it is a regular, non-empty file,
and Pillow opens it as a picture. The upload then reopens that same path without following a link and
streams it, after checking that it still is the file that was checked.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

ALLOW_OUTSIDE_OPTION = "--allow-files-outside"


class LocalFileError(ValueError):
    """A file the batch names that is not uploaded (outside the folder, not a picture, special...)."""


@dataclass(frozen=True)
class Upload:
    """A checked picture: its real path, size and sha256."""

    path: Path
    size: int
    sha256: str

    def open(self) -> BinaryIO:
        """The checked file again, for streaming: no link followed, still a regular file of the same size."""
        return _open_regular(self.path, self.path, self.size)

    def load(self) -> LoadedUpload:
        """The checked picture's bytes, for a worker on another machine (still the file that was checked)."""
        with self.open() as f:
            data = f.read(self.size + 1)
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise LocalFileError(f"{self.path}: changed since it was checked; run the batch again")
        return LoadedUpload(self.path, self.size, self.sha256, data)


@dataclass(frozen=True)
class LoadedUpload(Upload):
    """A checked picture carried in memory (to a cluster worker): uploaded from its bytes."""

    data: bytes = field(default=b"", repr=False)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


def _open_regular(path: Path, shown: Path, size: int | None = None) -> BinaryIO:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise LocalFileError(f"{shown}: cannot be opened ({e.strerror or type(e).__name__})") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file (a device, pipe or folder is never uploaded)"
    elif info.st_size == 0:
        problem = "empty (or a system file with no size, such as /proc/...): not a picture"
    elif size is not None and info.st_size != size:
        problem = "changed since it was checked; run the batch again"
    if problem:
        os.close(fd)
        raise LocalFileError(f"{shown}: {problem}")
    return os.fdopen(fd, "rb")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _open_picture(f: BinaryIO, shown: Path) -> None:
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("the batch client needs Pillow to check pictures before upload: pip install pillow") from None
    try:
        with Image.open(f) as picture:
            picture.verify()
    except Exception as e:  # Pillow raises many kinds for files that are not pictures (SyntaxError among them)
        raise LocalFileError(
            f"{shown}: not a picture Pillow can open ({type(e).__name__}); nothing was uploaded"
        ) from None


def check_picture(path: Path, root: Path | None) -> Upload:
    """The picture ``path`` names, checked for upload; ``root`` None allows files anywhere (the user's flag)."""
    # Outside the folder first, whether the file exists or not: a batch file cannot probe what lies elsewhere.
    try:
        outside = root is not None and not _inside(path.resolve(), root.resolve())
        real = None if outside else path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        raise LocalFileError(f"image not found: {path}") from None
    outside = outside or (root is not None and not _inside(real, root.resolve()))
    if outside:
        raise LocalFileError(
            f"{path}: outside the batch's folder {root} (the path or a link on its way leads elsewhere); "
            f"nothing was uploaded. Copy the picture into that folder, or give {ALLOW_OUTSIDE_OPTION} if you "
            "trust every path this batch names"
        )
    with _open_regular(real, path) as f:
        _open_picture(f, path)
        f.seek(0)
        digest = hashlib.sha256()
        size = 0
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return Upload(real, size, digest.hexdigest())


def readable_beside(path: Path, root: Path | None) -> bool:
    """Whether a prompt file beside a picture may be read: a regular file whose real path is in ``root``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real.is_file() and (root is None or _inside(real, root.resolve()))
