"""Shared test setup: the project root and ``tests/support`` on sys.path, and a one-thread fixture.

The reference data (golden outputs of the original, checkpoint manifests) are the project's own:
``support.reference_data`` says where.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):  # the project's packages, and tests/support helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@pytest.fixture
def single_thread():
    """Golden outputs were produced with one torch thread; matching it keeps results at the noise floor."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
