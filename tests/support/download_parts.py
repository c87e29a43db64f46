"""The pieces the download-node tests share (``tests/host/nodes/download``; fixtures in its ``conftest.py``): the
catalogue labels used, the fake hub's payload, a recorder of progress updates that can press Cancel, and
the node run as a graph would run it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

ORIGINAL_512 = "512 (original, full, 10.4 GB)"
KIJAI_1024 = "1024 (Kijai, bf16, full, 5.2 GB)"
PAYLOAD = random.Random(0).randbytes(3 * 2**20 + 12345)  # a few MB, not a multiple of the chunk size
CHUNK = 64 * 2**10
TOKEN = "hf_fake_token_for_tests"


class ProgressLog:
    """Captures comfy.utils.ProgressBar updates through the global hook; can press Cancel at a fraction."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.cancel_at: float | None = None

    def __call__(self, value: int, total: int, preview: Any, node_id: Any = None) -> None:
        self.calls.append((value, total))
        if self.cancel_at is not None and value >= self.cancel_at * total:
            import comfy.model_management

            comfy.model_management.interrupt_current_processing(True)
            self.cancel_at = None


def run_node(download: Any, model: str = ORIGINAL_512, destination: str = "checkpoints") -> Any:
    return download.DynamiCrafterModelDownload.execute(model=model, destination=destination)


def no_partials(folder: Path) -> bool:
    return not list(folder.glob("*.incomplete"))
