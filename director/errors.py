"""The one error type the director nodes raise, with messages written for the person at the graph."""

from __future__ import annotations


class DirectorError(RuntimeError):
    """A director step failed; the message says what to do and never contains a key."""

    __module__ = "dynamicrafter"  # as ComfyUI shows the type: never the install path
