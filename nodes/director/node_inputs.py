"""What the director's nodes share: their category, connection type and common inputs, the cancel check."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from ...director.client import DirectorConnection
from ...director.errors import DirectorError
from ...director.policy import audio_roots
from ..adapter.validation import CheckedNode

CATEGORY = "DynamiCrafter/director"
Director = io.Custom("DYNAMICRAFTER_DIRECTOR")
SEED_MAX = 2**31 - 1


MAX_TEXT_ENV = "DYNAMICRAFTER_DIRECTOR_MAX_TEXT"
DEFAULT_MAX_TEXT = 20_000
"""Longest text a director node sends (characters): a prompt or a story, not a book; each one costs the
server's key."""


def max_text() -> int:
    """The administrator's bound on a director text (``DYNAMICRAFTER_DIRECTOR_MAX_TEXT``, read at each check)."""
    try:
        value = int(os.environ.get(MAX_TEXT_ENV, "").strip() or DEFAULT_MAX_TEXT)
    except ValueError:
        value = DEFAULT_MAX_TEXT
    return value if value > 0 else DEFAULT_MAX_TEXT


class DirectorNode(CheckedNode):
    """A director node: the pack's checks when queued and when run (finite numbers in range, known choices), and
    every text within :func:`max_text`, so no request is sent with a value that is not valid."""

    @classmethod
    def values_problem(cls, values: Mapping[str, Any]) -> str | None:
        limit = max_text()
        for name, value in values.items():
            if isinstance(value, str) and len(value) > limit:
                return (
                    f"{name} holds {len(value)} characters; a director node sends at most {limit} (an "
                    f"administrator can raise this with {MAX_TEXT_ENV})"
                )
        return None


def abort_check() -> None:
    """Raise when the user pressed Cancel in ComfyUI."""
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()


def input_audio_roots() -> list[Path]:
    """ComfyUI's input folder and the admin's audio folders: the only places the Soundtrack node reads."""
    import folder_paths

    return audio_roots(folder_paths.get_input_directory())


def connection_input() -> io.Input:
    return Director.Input("director", tooltip="The AI director connection (from the 'Director Connection' node).")


def temperature_input() -> io.Input:
    return io.Float.Input(
        "temperature",
        default=0.0,
        min=0.0,
        max=2.0,
        step=0.05,
        tooltip="Randomness of the answer: 0 gives the same answer for the same inputs.",
    )


def seed_input() -> io.Input:
    return io.Int.Input(
        "seed",
        default=0,
        min=0,
        max=SEED_MAX,
        tooltip="Sent to the model for repeatable answers where the server supports a seed.",
    )


def check_connection(director: Any) -> DirectorConnection:
    if not isinstance(director, DirectorConnection):
        raise DirectorError("the 'director' input must come from the 'Director Connection' node")
    return director
