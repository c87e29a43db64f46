"""Where the reference test data live: the project's own ``tests/data``.

``tests/data/parity``: golden outputs of the original implementation (its README says which original code,
at which commit, produced them and how); ``DYNAMICRAFTER_PARITY_DIR`` points the parity tests at another
folder of golden files, and they read whatever fixture sets it holds. ``tests/data/checkpoint_manifests``:
every key and shape of each released checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
MANIFESTS = DATA / "checkpoint_manifests"
PARITY_SMALL_512 = DATA / "parity" / "small_512"
"""The 512-structure parity network the interpolation, loop and long-video goldens were made with."""


def parity_dir() -> Path:
    """The folder of golden outputs: ``$DYNAMICRAFTER_PARITY_DIR``, default ``tests/data/parity``."""
    value = os.environ.get("DYNAMICRAFTER_PARITY_DIR")
    return Path(value).expanduser().resolve() if value else DATA / "parity"


def manifest_path(variant: str) -> Path:
    """Every key and shape of the released checkpoint of ``variant`` (256, 512, 1024, 512_interp)."""
    return MANIFESTS / f"dynamicrafter_{variant}.json"
