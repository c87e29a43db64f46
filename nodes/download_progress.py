"""Progress and Cancel of the model download: ComfyUI's progress bar follows the bytes on disk."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import comfy.model_management
import comfy.utils


class DownloadProgress:
    """Reports bytes on disk to ComfyUI's progress bar and raises when the user pressed Cancel."""

    def __init__(self, total: int | None, start: int = 0) -> None:
        self.total = total
        self._bar = comfy.utils.ProgressBar(total or 1)
        self._step = max((total or 0) // 1000, 1)
        self._last = -self._step
        self.update(start)

    def update(self, done: int) -> None:
        self._show(done)
        comfy.model_management.throw_exception_if_processing_interrupted()

    def finish(self, done: int) -> None:
        """The file is complete: show it, without checking for Cancel any more."""
        self._show(done)

    def _show(self, done: int) -> None:
        if self.total and (done - self._last >= self._step or done >= self.total):
            self._bar.update_absolute(min(done, self.total), self.total)
            self._last = done


class ProgressFile:
    """The partial file as ``http_get`` sees it: each write reports progress and checks for Cancel.

    Wrapping the file (rather than huggingface_hub's tqdm) works with every huggingface_hub release;
    progress is the absolute file position, so a restarted range is counted right.
    """

    def __init__(self, raw: BinaryIO, progress: DownloadProgress) -> None:
        self._raw = raw
        self._progress = progress

    @property
    def name(self) -> str:
        return self._raw.name

    def write(self, data: bytes) -> int:
        written = self._raw.write(data)
        self._progress.update(self._raw.tell())
        return written

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        return self._raw.truncate(size)

    def flush(self) -> None:
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)
