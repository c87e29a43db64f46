"""Progress and Cancel of the model download: ComfyUI's progress bar follows the bytes on disk."""

from __future__ import annotations

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
