"""Shared test setup: the project root on sys.path and the paths of the shared fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):  # the project's packages, and tests/support helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def shared_dir() -> Path | None:
    """The shared reference folder (parity fixtures, manifests), beside the project when present."""
    candidates = [os.environ.get("DYNAMICRAFTER_SHARED")] + [parent / "shared" for parent in ROOT.parents]
    for candidate in candidates:
        if candidate and (Path(candidate) / "parity").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        pytest.fail("shared reference folder not found: set DYNAMICRAFTER_SHARED to the folder holding parity/ and checkpoint_manifests/")
    return path


@pytest.fixture
def single_thread():
    """Golden outputs were produced with one torch thread; matching it keeps results at the noise floor."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
