"""The README's run command: ``scripts/run --demo`` from a clean clone of the repository writes an MP4.

The clone reuses this machine's virtual environment and ComfyUI (``DYNAMICRAFTER_VENV``, ``COMFYUI_DIR``) so
nothing is reinstalled, and the demo checkpoint the server tests share (``--models-dir``), so the 2 GB file
is written once per machine. Everything else (the pack's link into ComfyUI, the extra-model-paths file, the
server's folders) is made by the clone itself. The clone is of the last commit: commit before running it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image


ROOT = Path(__file__).resolve().parents[2]


def _comfyui_dir() -> Path:
    value = os.environ.get("COMFYUI_DIR")
    return Path(value).resolve() if value else ROOT / ".cache" / "comfyui"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("clean") / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


def test_help_needs_no_setup(clone):
    result = subprocess.run([str(clone / "scripts" / "run"), "--help"], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k not in ("COMFYUI_DIR", "DYNAMICRAFTER_VENV")})
    assert result.returncode == 0, result.stderr
    assert "--demo" in result.stdout and "--download" in result.stdout
    assert not (clone / ".venv").exists()


def test_demo_run_from_a_clean_clone_writes_an_mp4(clone, tmp_path, demo_models):
    comfy_dir = _comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        pytest.fail(f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR")
    pixels = np.zeros((90, 160, 3), dtype=np.uint8)
    pixels[:, :80] = (220, 120, 40)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    env = {**os.environ, "DYNAMICRAFTER_VENV": sys.prefix, "COMFYUI_DIR": str(comfy_dir),
           # one torch thread: on a busy 2-core machine the thread pool spins and runs tiny models 10x slower
           "OMP_NUM_THREADS": "1"}
    command = [str(clone / "scripts" / "run"), "--demo", "--image", "photo.png", "--prompt", "waves",
               "--out", "videos", "--models-dir", str(demo_models)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-5000:]}"

    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must carry only the MP4's path: {result.stdout!r}"
    video = Path(lines[0])
    assert video.suffix == ".mp4" and video.parent == tmp_path / "videos" and video.is_file()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (sum(1 for _ in container.decode(stream)), stream.width, stream.height) == (16, 128, 64)
    assert "random noise" in result.stderr
    assert "DynamiCrafterSampler 3/3" in result.stderr  # the progress line
    assert "workflows/api/image_to_video_512.json" in result.stderr or "built-in" in result.stderr
    assert (clone / ".cache" / "run" / "custom_nodes" / "comfyui-dynamicrafter-native").resolve() == clone
    assert not (comfy_dir / "custom_nodes" / "comfyui-dynamicrafter-native").exists(), "ComfyUI stays untouched"


def test_download_fetches_the_variant_through_the_download_node(clone, tmp_path):
    """``--download 512``: the pack's download node, run on the server against a local fake hub, saves the
    authors' file as dynamicrafter_512_v1.ckpt in --models-dir; here the hub's "model" is not a checkpoint, so
    the run then stops with the loader's error naming the file (a real file would go on to the video)."""
    from support.fake_hf_server import FakeHub

    comfy_dir = _comfyui_dir()
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    payload = b"not a checkpoint " * 4096
    with FakeHub() as hub:
        hub.add_file("Doubiiu/DynamiCrafter_512", "model.ckpt", payload)
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
        env.update({"DYNAMICRAFTER_VENV": sys.prefix, "COMFYUI_DIR": str(comfy_dir), "OMP_NUM_THREADS": "1",
                    "HF_ENDPOINT": hub.url})
        command = [str(clone / "scripts" / "run"), "--download", "512", "--image", "photo.png",
                   "--models-dir", str(tmp_path / "models"), "--out", "videos"]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    saved = tmp_path / "models" / "checkpoints" / "dynamicrafter_512_v1.ckpt"
    assert saved.is_file(), result.stderr[-3000:]
    assert saved.read_bytes() == payload
    assert result.returncode == 1 and result.stdout == ""
    assert "downloading (or finding) 512 (original" in result.stderr
    assert "dynamicrafter_512_v1.ckpt" in result.stderr.split("error:", 1)[1]
