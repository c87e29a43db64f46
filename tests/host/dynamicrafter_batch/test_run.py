"""The README's run command from a clean clone of the repository: ``scripts/run``.

The clone reuses this machine's virtual environment and ComfyUI (``DYNAMICRAFTER_VENV``, ``COMFYUI_DIR``) so
nothing is reinstalled, and the demo checkpoint of this test run (``--models-dir``), so the 1.9 GB file is
written once. Everything else (the pack's link into ComfyUI, the extra-model-paths file, the server's
folders) is made by the clone itself. The clone is of the last commit: commit before running it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def _comfyui_dir() -> Path:
    value = os.environ.get("COMFYUI_DIR")
    if not value or not (Path(value) / "main.py").is_file():
        pytest.fail(f"ComfyUI not found in {value!r}: set COMFYUI_DIR (scripts/test does)")
    return Path(value).resolve()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("clean") / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    pixels = np.zeros((90, 160, 3), dtype=np.uint8)
    pixels[:, :80] = (220, 120, 40)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _env(**extra: str) -> dict[str, str]:
    # one torch thread: on a busy 2-core machine the thread pool spins and runs tiny models 10x slower
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update({"DYNAMICRAFTER_VENV": sys.prefix, "COMFYUI_DIR": str(_comfyui_dir()), "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


def _run(clone: Path, cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900):
    return subprocess.run(
        [str(clone / "scripts" / "run"), *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_help_needs_no_setup(clone):
    result = subprocess.run(
        [str(clone / "scripts" / "run"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("COMFYUI_DIR", "DYNAMICRAFTER_VENV")},
    )
    assert result.returncode == 0, result.stderr
    assert "--demo" in result.stdout and "--download" in result.stdout and "--again" in result.stdout
    assert not (clone / ".venv").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--demo", "--image", "missing.png"], "--image missing.png: no such file"),
        (["--demo", "--image", "notes.txt"], "--image notes.txt: not a picture (it is a text file)"),
        (["--model", "missing.ckpt", "--image", "photo.png"], "--model missing.ckpt: no such file"),
        (["--model", "page.ckpt", "--image", "photo.png"], "--model page.ckpt: this is an HTML page"),
        (
            ["--model", "photo.png", "--image", "photo.png"],
            "--model photo.png: this is a PNG picture, not a checkpoint",
        ),
        (["--demo", "--image", "photo.png", "--width", "500"], "--width 500: use a multiple of 64"),
    ],
)
def test_argument_errors_come_before_any_setup(clone, photo, tmp_path, args, expected):
    """The check runs on the system's python3 before the venv, ComfyUI or a server: nothing is created."""
    (tmp_path / "notes.txt").write_text("These are notes, not a picture.\n")
    (tmp_path / "page.ckpt").write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    venv = tmp_path / "venv-that-must-not-appear"
    started = time.monotonic()
    result = _run(clone, tmp_path, *args, env={**_env(), "DYNAMICRAFTER_VENV": str(venv)}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert _last_line(result.stderr) == f"scripts/run: error: {expected}" or expected in _last_line(result.stderr)
    assert not venv.exists() and not (clone / ".cache").exists()
    assert time.monotonic() - started < 30


def test_demo_run_from_a_clean_clone_writes_an_mp4(clone, photo, tmp_path, demo_models):
    comfy_dir = _comfyui_dir()
    args = ["--demo", "--image", str(photo), "--prompt", "waves", "--out", "videos", "--models-dir", str(demo_models)]
    result = _run(clone, tmp_path, *args)
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
    assert "] ComfyUI is ready" in result.stderr and "] done" in result.stderr  # stages with elapsed seconds
    assert (clone / ".cache" / "run" / "custom_nodes" / "comfyui-dynamicrafter-native").resolve() == clone
    assert not (comfy_dir / "custom_nodes" / "comfyui-dynamicrafter-native").exists(), "ComfyUI stays untouched"

    again = _run(clone, tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == result.stdout
    assert "rendered into" in again.stderr and "before: returning that video" in again.stderr
    assert "--again" in again.stderr
    assert "starting ComfyUI" not in again.stderr, "an earlier result is found in the journal without a server"

    fresh = _run(clone, tmp_path, *args, "--again")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    new_video = Path(fresh.stdout.strip())
    assert new_video != video and new_video.parent == video.parent and new_video.is_file() and video.is_file()
    assert "before: returning" not in fresh.stderr and "DynamiCrafterSampler 3/3" in fresh.stderr
    assert not list(video.parent.glob(".again-*")), "the scratch folder of --again is removed"


def test_sigterm_stops_the_server_and_ends_with_one_line(clone, photo, tmp_path, demo_models):
    command = [
        str(clone / "scripts" / "run"),
        "--demo",
        "--image",
        str(photo),
        "--out",
        "videos",
        "--models-dir",
        str(demo_models),
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "starting ComfyUI" in line:
            break
    server_pid = None
    deadline = time.monotonic() + 60
    while server_pid is None and time.monotonic() < deadline:  # the server process the run started
        found = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "main.py"], capture_output=True, text=True)
        server_pid = int(found.stdout.split()[0]) if found.stdout.split() else None
        time.sleep(0.2)
    assert server_pid is not None, "".join(lines)
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert _last_line(rest) == "scripts/run: stopped by SIGTERM; the ComfyUI server it started is stopped as well"
    assert "Traceback" not in rest
    deadline = time.monotonic() + 30
    while Path(f"/proc/{server_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{server_pid}").exists(), "the ComfyUI server must not outlive the run command"


def test_download_goes_to_the_models_folder_that_reprovisioning_keeps(clone, photo, tmp_path):
    """``--download 512``: the pack's download node, run on the server against a local fake hub, saves the
    authors' file as dynamicrafter_512_v1.ckpt in the clone's ``models/checkpoints``; here the hub's "model"
    is not a checkpoint, so the run then stops with the loader's error, told last. Re-provisioning ComfyUI
    (a new release: its folder is replaced) leaves the download where it is."""
    from support.fake_hf_server import FakeHub

    payload = b"not a checkpoint " * 4096
    with FakeHub() as hub:
        hub.add_file("Doubiiu/DynamiCrafter_512", "model.ckpt", payload)
        result = _run(
            clone,
            tmp_path,
            "--download",
            "512",
            "--image",
            str(photo),
            "--out",
            "videos",
            env=_env(HF_ENDPOINT=hub.url),
            timeout=600,
        )
    saved = clone / "models" / "checkpoints" / "dynamicrafter_512_v1.ckpt"
    assert saved.is_file(), result.stderr[-3000:]
    assert saved.read_bytes() == payload
    assert result.returncode == 1 and result.stdout == ""
    assert "downloading (or finding) 512 (original" in result.stderr
    last = _last_line(result.stderr)
    assert last.startswith("scripts/run: error:") and "dynamicrafter_512_v1.ckpt" in last
    assert result.stderr.index("--- the last lines of the ComfyUI log") < result.stderr.rindex(last)

    # Re-provision the clone's own ComfyUI as a release change does (its folder is deleted and extracted again).
    version = os.environ.get("DYNAMICRAFTER_COMFYUI_VERSION")
    if not version:
        pytest.fail("set DYNAMICRAFTER_COMFYUI_VERSION to the release of COMFYUI_DIR and this venv (scripts/test does)")
    host = clone / ".cache" / f"comfyui-{version}"
    host.mkdir(parents=True)
    (host / ".comfyui_commit").write_text("an older release\n")
    env = {k: v for k, v in _env().items() if k != "COMFYUI_DIR"}
    kit = next((folder / "shared" for folder in ROOT.parents if (folder / "shared/comfyui/install.sh").is_file()), None)
    if kit is not None:  # the provisioning kit beside this checkout (the clone lives elsewhere); else a git clone
        env["DYNAMICRAFTER_SHARED"] = str(kit)
    provision = subprocess.run(
        [
            "bash",
            "-c",
            f'ROOT="$1"; source "$1/scripts/lib/env.sh"; use_host {version}; ensure_comfyui; echo "$COMFYUI_DIR"',
            "_",
            str(clone),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert provision.returncode == 0, provision.stderr[-3000:]
    assert (host / "main.py").is_file() and (host / ".comfyui_commit").read_text() != "an older release\n"
    assert saved.read_bytes() == payload
