"""A Keyframe Chain's pictures counted when the prompt is queued, on a real server (``nodes/chain_queue.py``): with
``DYNAMICRAFTER_MAX_RUN_GB=2`` the shipped chain workflow fed 41 keyframes (601 frames at 512x320) is refused by
``POST /prompt``, as the same frames in one Long Video are; more pictures than ``DYNAMICRAFTER_MAX_KEYFRAMES`` are
refused alike; the shipped three-keyframe chain is accepted."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from support.comfy_server import ComfyServer, ServerSetup, load_api_workflow

pytestmark = pytest.mark.host


def _post(server: ComfyServer, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + "/prompt", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _repeated(prompt: dict[str, Any], amount: int, size: int | None = None) -> dict[str, Any]:
    """The chain workflow with its keyframes made by RepeatImageBatch of one picture, ``amount`` times."""
    prompt = json.loads(json.dumps(prompt))
    prompt["90"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["4", 0], "amount": amount}}
    chain = next(node for node in prompt.values() if node["class_type"] == "DynamiCrafterKeyframeChain")
    chain["inputs"]["keyframes"] = ["90", 0]
    if size is not None:
        chain["inputs"].update(width=size, height=size)
    return prompt


def test_a_41_keyframe_chain_is_refused_when_queued_under_a_2_gib_cap(comfy_host, tmp_path: Path, monkeypatch):
    setup = ServerSetup.create(tmp_path / "server")
    shipped = load_api_workflow("keyframe_chain_512")
    for node in shipped.values():
        if node["class_type"] == "LoadImage":
            Image.fromarray(np.full((64, 96, 3), 128, dtype=np.uint8)).save(setup.input_dir / node["inputs"]["image"])
        if node["class_type"] == "DynamiCrafterCheckpointLoader":
            (setup.models / "checkpoints" / node["inputs"]["ckpt_name"]).write_bytes(b"only its name is checked")
    monkeypatch.setenv("DYNAMICRAFTER_MAX_RUN_GB", "2")
    monkeypatch.delenv("DYNAMICRAFTER_MAX_KEYFRAMES", raising=False)
    server = ComfyServer(comfy_host.comfy_dir, setup, tmp_path / "server.log")
    with server:
        server.wait_ready(300)
        status, reply = _post(server, {"prompt": _repeated(shipped, 41)})
        assert status == 400, reply
        text = json.dumps(reply["node_errors"])
        assert "16 frames at 512x320, 601 frames out" in text and "more than the 2 GiB" in text, text

        status, reply = _post(server, {"prompt": _repeated(shipped, 65, size=64)})
        assert status == 400 and "holds 65 pictures; a chain takes at most 64" in json.dumps(reply), reply

        status, reply = _post(server, {"prompt": shipped})  # three keyframes, 31 frames: within 2 GiB
        assert status == 200, reply
        _post_interrupt(server)


def _post_interrupt(server: ComfyServer) -> None:
    request = urllib.request.Request(
        server.url + "/interrupt", data=b"{}", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).close()
