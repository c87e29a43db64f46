"""Blocking work that still hears ComfyUI's Cancel: run it in a worker thread and poll while waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.1
"""How often Cancel is checked while waiting (the node stops within about this long after Cancel)."""


class TimedOut(Exception):
    """The work did not finish within its time; the worker thread is left to end on its own."""


class WorkFailed(Exception):
    """The work raised ``error`` (kept apart from what ``abort_check`` raises, which passes through as it is)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def run_polling(work: Callable[[], T], limit_s: float, abort_check: Callable[[], None] | None) -> T:
    """``work()`` in a daemon thread; ``abort_check()`` every ``POLL_S`` while waiting (it may raise to stop).

    Raises TimedOut after ``limit_s``, WorkFailed when ``work`` raised.
    """
    result: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001  (handed to the waiting thread, which decides)
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="dynamicrafter-director-request", daemon=True).start()
    end = time.monotonic() + max(0.0, limit_s)
    while not done.wait(max(0.0, min(POLL_S, end - time.monotonic()))):
        if abort_check is not None:
            abort_check()
        if time.monotonic() >= end:
            raise TimedOut()
    if failure:
        raise WorkFailed(failure[0])
    return result[0]


def sleep_polling(seconds: float, abort_check: Callable[[], None] | None) -> None:
    """Sleep ``seconds`` while checking ``abort_check`` every ``POLL_S``."""
    end = time.monotonic() + max(0.0, seconds)
    while (left := end - time.monotonic()) > 0:
        if abort_check is not None:
            abort_check()
        time.sleep(min(POLL_S, left))
