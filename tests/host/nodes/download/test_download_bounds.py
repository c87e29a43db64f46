"""Download Model against hostile mirrors (a local fake hub on 127.0.0.1): an endless body is stopped at the
size the hub states and the file removed; Cancel on a mirror that trickles a byte at a time is heard within
a second or two, in-process and on a real server (``POST /interrupt``), whose next prompt then runs; a slow
transfer ends at its deadline; the node runs only when its output is used (or the admin allows more); a
deleted file is looked for again."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.comfy_server import ComfyServer, ServerSetup
from support.download_parts import KIJAI_1024, ORIGINAL_512, PAYLOAD, ProgressLog, no_partials, run_node
from support.fake_hf_server import FakeHub, wait_for_trickle

pytestmark = pytest.mark.host


def test_a_flooding_mirror_is_stopped_at_the_stated_size_and_the_file_removed(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    hub.body = "flood"  # announces len(PAYLOAD) on the hub, then sends an endless body
    with pytest.raises(download.ModelDownloadError, match=f"more than the {len(PAYLOAD)} bytes the hub states"):
        run_node(download)
    assert not list(models["checkpoints"].iterdir()), "nothing left behind"
    assert hub.flood_sent < len(PAYLOAD) + (32 << 20), "the client stopped reading soon after the stated size"


def _cancel_after_first_get(hub: FakeHub, pressed: list[float]) -> threading.Thread:
    import comfy.model_management

    def press() -> None:
        deadline = time.monotonic() + 30
        while not hub.gets() and time.monotonic() < deadline:
            time.sleep(0.01)
        wait_for_trickle(hub, 1)  # a byte in
        pressed.append(time.monotonic())
        comfy.model_management.interrupt_current_processing(True)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("keep", [False, True])
def test_cancel_on_a_trickling_mirror_is_heard_within_a_second(
    download: Any,
    models: dict[str, Path],
    hub: FakeHub,
    progress: ProgressLog,
    monkeypatch: pytest.MonkeyPatch,
    keep: bool,
) -> None:
    import comfy.model_management

    if keep:
        monkeypatch.setenv("DYNAMICRAFTER_RESUME_DOWNLOADS", "1")
    hub.body, hub.trickle_s = "trickle", 0.2
    pressed: list[float] = []
    _cancel_after_first_get(hub, pressed)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run_node(download)
    stopped = time.monotonic() - pressed[0]
    assert stopped < 1.0, f"Cancel took {stopped:.2f} s"
    partials = list(models["checkpoints"].glob("*.incomplete"))
    if keep:
        assert len(partials) == 1 and 0 < partials[0].stat().st_size < 64, "the bytes received, kept for a resume"
    else:
        assert not partials, "the partial file is removed unless the admin keeps them"


def test_a_slow_transfer_ends_at_its_deadline(
    comfy_host: Any,
    download: Any,
    models: dict[str, Path],
    hub: FakeHub,
    progress: ProgressLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transfer = comfy_host.import_pack_module("nodes.download.transfer")

    monkeypatch.setattr(transfer, "GRACE_S", 1.0)
    monkeypatch.setenv(transfer.MIN_RATE_ENV, "1000")  # 1 GB/s: the few MB are due within a second
    hub.body, hub.trickle_s = "trickle", 0.05
    started = time.monotonic()
    with pytest.raises(download.ModelDownloadError, match=f"deadline.*{transfer.MIN_RATE_ENV}"):
        run_node(download)
    assert time.monotonic() - started < 5
    assert no_partials(models["checkpoints"])


def test_only_a_connected_download_runs_unless_the_admin_allows_more(
    comfy_host: Any, download: Any, models: dict[str, Path], hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DYNAMICRAFTER_DOWNLOADS")
    alone = {
        "1": {
            "class_type": "DynamiCrafterModelDownload",
            "inputs": {"model": ORIGINAL_512, "destination": "checkpoints"},
        }
    }
    run = comfy_host.run_prompt(alone, check=False)
    assert (
        not run.success and "runs only when its file_name output feeds another node" in run.error["exception_message"]
    )
    assert "DYNAMICRAFTER_DOWNLOADS=any" in run.error["exception_message"]
    assert not hub.gets() and not list(models["checkpoints"].glob("*"))
    connected = {**alone, "2": {"class_type": "Anything", "inputs": {"ckpt_name": ["1", 0]}}}
    download.check_download_allowed(connected, "1")  # a node that uses the file name: allowed
    monkeypatch.setenv("DYNAMICRAFTER_DOWNLOADS", "off")
    with pytest.raises(download.ModelDownloadError, match="turned off"):
        download.check_download_allowed(connected, "1")


def test_a_deleted_file_is_looked_for_again(
    download: Any, models: dict[str, Path], hub: FakeHub, progress: ProgressLog
) -> None:
    node = download.DynamiCrafterModelDownload
    missing = node.fingerprint_inputs(ORIGINAL_512, "checkpoints")
    assert node.fingerprint_inputs(ORIGINAL_512, "checkpoints") != missing, "a missing file never hits the cache"
    run_node(download)
    present = node.fingerprint_inputs(ORIGINAL_512, "checkpoints")
    assert node.fingerprint_inputs(ORIGINAL_512, "checkpoints") == present
    (models["checkpoints"] / "dynamicrafter_512_v1.ckpt").unlink()
    assert node.fingerprint_inputs(ORIGINAL_512, "checkpoints") != present


def _model_files(setup: ServerSetup) -> list[Path]:
    """Model and partial files in every checkpoints folder the server may write (its own models folder comes
    first), the verification record aside."""
    folders = [setup.base / "models" / "checkpoints", setup.models / "checkpoints"]
    found = [path for folder in folders if folder.is_dir() for path in folder.iterdir() if path.is_file()]
    return [path for path in found if path.name != ".dynamicrafter_verified.json"]


def _post(server: ComfyServer, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


def _finished(server: ComfyServer, prompt_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = server.get(f"/history/{prompt_id}").body.get(prompt_id)
        if entry and (entry.get("status") or {}).get("completed") is not None:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not finish within {timeout} s")


def test_server_cancel_on_a_trickling_mirror_within_two_seconds_then_the_next_prompt_runs(
    comfy_host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = ServerSetup.create(tmp_path / "server")
    with FakeHub() as hub:
        hub.add_file("Doubiiu/DynamiCrafter_512", "model.ckpt", PAYLOAD)
        hub.body, hub.trickle_s = "trickle", 0.5
        for name, value in {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf_home"),
            "NO_PROXY": "127.0.0.1,localhost",
            "DYNAMICRAFTER_DOWNLOADS": "any",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("DYNAMICRAFTER_RESUME_DOWNLOADS", raising=False)
        server = ComfyServer(comfy_host.comfy_dir, setup, tmp_path / "server.log")
        with server:
            server.wait_ready(300)
            prompt = {
                "1": {
                    "class_type": "DynamiCrafterModelDownload",
                    "inputs": {"model": ORIGINAL_512, "destination": "checkpoints"},
                }
            }
            first = _post(server, "/prompt", {"prompt": prompt})["prompt_id"]
            deadline = time.monotonic() + 60
            while not hub.gets() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert hub.gets(), server.log_tail()
            wait_for_trickle(hub, 2)  # a couple of bytes in
            pressed = time.monotonic()
            _post(server, "/interrupt", {})
            entry = _finished(server, first)
            took = time.monotonic() - pressed
            assert took < 2.0, f"Cancel took {took:.2f} s"
            assert entry["status"]["status_str"] == "error"
            assert any(name == "execution_interrupted" for name, _ in entry["status"]["messages"])
            assert not _model_files(setup), "the partial file was removed"

            hub.body = "normal"
            second = _post(server, "/prompt", {"prompt": prompt})["prompt_id"]
            assert _finished(server, second)["status"]["status_str"] == "success", server.log_tail()
            [saved] = _model_files(setup)
            assert saved.name == "dynamicrafter_512_v1.ckpt" and saved.read_bytes() == PAYLOAD

            # A pack error in /history names its type without the server's install path.
            missing = {"1": {**prompt["1"], "inputs": {"model": KIJAI_1024, "destination": "checkpoints"}}}
            failed = _finished(server, _post(server, "/prompt", {"prompt": missing})["prompt_id"])
            [error] = [data for name, data in failed["status"]["messages"] if name == "execution_error"]
            assert error["exception_type"] == "dynamicrafter.ModelDownloadError", error["exception_type"]
            assert "refused access to Kijai/DynamiCrafter_pruned" in error["exception_message"]
            assert str(setup.custom_nodes) not in error["exception_type"] and "/" not in error["exception_type"]
