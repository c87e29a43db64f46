"""The training nodes' host: a tiny DynamiCrafter 512 model loaded through the pack's loader, a loras folder."""

from __future__ import annotations

import pytest

from support.training_host import TrainingHost, provision


@pytest.fixture(scope="module")
def training_host(comfy_host, tmp_path_factory) -> TrainingHost:
    return provision(comfy_host, tmp_path_factory)
