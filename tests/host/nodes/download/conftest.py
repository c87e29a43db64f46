"""Fixtures of the download-node tests: the node registered with the host, temporary model folders as the
host's only ones, a local fake Hugging Face hub (huggingface.co is never contacted), and the progress hook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.download_parts import CHUNK, PAYLOAD, TOKEN, ProgressLog
from support.fake_hf_server import FakeHub


@pytest.fixture(scope="module")
def download(comfy_host: Any) -> Any:
    module = comfy_host.import_pack_module("nodes.download.node")
    comfy_host.register(module.NODES)
    return module


@pytest.fixture
def models(comfy_host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Temporary checkpoints/ and diffusion_models/ folders, registered as ComfyUI's only model paths."""
    folder_paths = comfy_host.folder_paths
    folders = {}
    for kind in ("checkpoints", "diffusion_models"):
        folders[kind] = tmp_path / "models" / kind
        monkeypatch.setitem(
            folder_paths.folder_names_and_paths, kind, ([str(folders[kind])], set(folder_paths.supported_pt_extensions))
        )
    return folders


@pytest.fixture
def hub(download: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake hub serving the 512 original and Kijai's 1024 bf16 file; huggingface_hub pointed at it."""
    import huggingface_hub.constants

    fake = FakeHub()
    fake.add_file("Doubiiu/DynamiCrafter_512", "model.ckpt", PAYLOAD)
    fake.add_file("Kijai/DynamiCrafter_pruned", "dynamicrafter_1024_v1_bf16.safetensors", PAYLOAD[::-1])
    with fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)  # read by the node when it runs
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        # These tests run the node alone (as the run command's own server does); the default policy is tested
        # in test_download_bounds.py.
        monkeypatch.setenv("DYNAMICRAFTER_DOWNLOADS", "any")
        monkeypatch.delenv("DYNAMICRAFTER_RESUME_DOWNLOADS", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
        yield fake


@pytest.fixture
def progress(comfy_host: Any) -> Iterator[ProgressLog]:
    import comfy.model_management
    import comfy.utils

    previous = comfy.utils.PROGRESS_BAR_HOOK
    log = ProgressLog()
    comfy.utils.set_progress_bar_global_hook(log)
    yield log
    comfy.utils.set_progress_bar_global_hook(previous)
    comfy.model_management.interrupt_current_processing(False)
