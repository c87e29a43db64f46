"""Shared test setup: the project root on PYTHONPATH for the programs tests start, and a one-thread fixture.

The reference data (golden outputs of the original, checkpoint manifests) are the project's own:
``support.reference_data`` says where.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# pytest.ini's ``pythonpath`` puts the project's packages and tests/support on sys.path; the programs the tests
# start (``python -m dynamicrafter_batch.client``) find the project's packages the same way.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))


# The files that take longest (pytest --durations), handed out first: two workers then finish together instead
# of one idling while the other runs a long file picked last (scripts/test passes --no-loadscope-reorder).
LONGEST_FIRST = (
    "host/dynamicrafter_batch/test_run.py",
    "browser/test_frontend.py",
    "host/nodes/adapter/test_family_patches.py",
    "host/nodes/adapter/test_encoders_oracle.py",
    "host/dynamicrafter_batch/test_pool.py",
    "host/dynamicrafter_batch/test_client.py",
    "host/workflows/test_features.py",
    "host/nodes/adapter/test_ksampler.py",
    "host/test_server.py",
    "host/workflows/test_controls.py",
    "host/nodes/test_init_noise.py",
    "unit/test_packaging.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(ROOT / "tests").as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture
def single_thread():
    """Golden outputs were produced with one torch thread; matching it keeps results at the noise floor."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
