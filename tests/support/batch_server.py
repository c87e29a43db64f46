"""A headless ComfyUI for the batch-client tests: the pack linked in, the tiny checkpoint beside it, its own
input and output folders under the test's folder, one torch thread."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynamicrafter_batch.comfy_process import ComfyProcess, server_folders
from dynamicrafter_batch.run import link_pack, write_extra_paths
from support.comfy_server import comfyui_dir
from support.host_checkpoints import TINY_FILE_NAME

BATCH = (sys.executable, "-m", "dynamicrafter_batch.client")
"""The batch client's command from the checkout (tests/conftest.py puts the checkout on PYTHONPATH)."""
TINY = ["--width", "128", "--height", "64", "--frames", "8", "--steps", "1"]
TINY_CKPT = ["--ckpt-name", TINY_FILE_NAME]


def batch_server(work: Path, tiny_models: Path) -> Iterator[ComfyProcess]:
    """A started server (a generator for a fixture: stopped after the tests)."""
    comfy_dir = comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        raise AssertionError(f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR")
    ckpt = tiny_models / "checkpoints" / TINY_FILE_NAME
    extra = write_extra_paths(work / "extra_model_paths.yaml", link_pack(work), [ckpt.parent], None)
    # One thread: on a busy 2-core machine torch's thread pool spins and runs the tiny networks 10x slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    instance = ComfyProcess(
        comfy_dir, work / "comfy" / "server.log", folder_args=server_folders(work / "comfy"), extra_paths=extra, env=env
    )
    instance.start()
    try:
        instance.wait_ready(300)
        yield instance
    finally:
        instance.stop()


def server_dir(server: ComfyProcess, kind: str) -> Path:
    """The server's ``input`` or ``output`` folder."""
    return server.log_path.parent / kind


def get_json(server: ComfyProcess, path: str) -> Any:
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        return json.loads(response.read())


def post_json(server: ComfyProcess, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
