"""One journal across three real ComfyUI servers (tests/support/comfy_server.py) on 127.0.0.1: 12 items of the
shipped image-to-video workflow at 64x64, 2 steps, on the tiny test checkpoint; one server SIGKILLed mid-item
and started again later, the client SIGKILLed and started again once. Exactly 12 videos, none made twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dynamicrafter_batch.journal import JOURNAL_NAME
from support.batch_server import BATCH
from support.batch_videos import complete_videos, frame_count
from support.comfy_server import ComfyServer, ServerSetup, comfyui_dir
from support.host_checkpoints import TINY_FILE_NAME

ROOT = Path(__file__).resolve().parents[3]

ITEMS = 12
SMALL = ["--width", "64", "--height", "64", "--frames", "4", "--steps", "2", "--ckpt-name", TINY_FILE_NAME]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, monkeypatch_module, tiny_models):
    comfy_dir = comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        pytest.fail(f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR")
    ckpt = tiny_models / "checkpoints" / TINY_FILE_NAME
    # One thread each: three servers share a small machine; torch's spinning thread pools would starve each other.
    monkeypatch_module.setenv("OMP_NUM_THREADS", "1")
    started = []
    for name in "abc":
        root = tmp_path_factory.mktemp(f"server-{name}")
        setup = ServerSetup.create(root)
        (setup.models / "checkpoints" / ckpt.name).symlink_to(ckpt)
        server = ComfyServer(comfy_dir, setup, root / "comfyui.log")
        server.start()
        started.append(server)
    try:
        for server in started:
            server.wait_ready(300)
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _records(out: Path) -> list[dict]:
    path = out / JOURNAL_NAME
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line the killed client was writing; the client repairs it on start
    return records


def _wait(out: Path, client: subprocess.Popen, what, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what(_records(out))
        if found:
            return found
        assert client.poll() is None, f"the client exited early ({client.returncode})"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting: {what.__doc__}")


def _running_on(records: list[dict], url: str) -> set[str]:
    """Items submitted to ``url`` and not yet done."""
    ended = {r["item"] for r in records if r["event"] in ("done", "failed", "released")}
    return {r["item"] for r in records if r["event"] == "submitted" and r.get("server") == url} - ended


def test_an_installed_client_without_a_checkout_reads_the_workflow_from_the_server(servers, tmp_path):
    """As ``pip install`` lays it out (package dynamicrafter_batch, no workflows/ beside it): the shipped
    workflow and the options read from it come from the server's pack."""
    package = tmp_path / "site" / "dynamicrafter_batch"
    package.mkdir(parents=True)
    for module in (ROOT / "dynamicrafter_batch").glob("*.py"):
        shutil.copy(module, package / module.name)
    (tmp_path / "pictures").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "pictures" / "p.png")
    command = [
        sys.executable,
        "-m",
        "dynamicrafter_batch.client",
        "--images",
        "pictures",
        "--out",
        "out",
        "--server",
        servers[0].url,
        "--server",
        servers[2].url,
        *SMALL,
        "--dry-run",
    ]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    plan = result.stdout.strip()
    assert f"{servers[0].url}/api/workflow_templates/" in plan and plan.endswith(
        f"sent to {servers[0].url} (or whichever server is free first)"
    )
    assert "/api/image_to_video_512.json" in plan and not (tmp_path / "out").exists()


def test_one_journal_across_three_servers_survives_a_server_and_a_client_kill(servers, tmp_path):
    image = tmp_path / "photo.png"
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (220, 120, 40)
    Image.fromarray(pixels).save(image)
    (tmp_path / "batch.csv").write_text(
        "image,prompt,seed\n" + "".join(f"photo.png,waves,{seed}\n" for seed in range(1, ITEMS + 1))
    )
    out, log = tmp_path / "out", tmp_path / "client.log"
    args = [
        *BATCH,
        "--csv",
        str(tmp_path / "batch.csv"),
        "--out",
        str(out),
        *SMALL,
        "--steps",  # slower items than the other tests' (the tiny model is quick), so some are left after the kill
        "12",
        "--concurrency",
        "1",
        "--poll",
        "0.5",
        "--reassign-after",
        "3",
        "--server-wait",
        "300",
    ]
    for server in servers:
        args += ["--server", server.url]
    victim = servers[1]

    def start_client() -> subprocess.Popen:
        with open(log, "ab") as stderr:
            return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)

    client = start_client()

    def victim_busy(records):
        """two items done and one just started on the second server (an item takes seconds: it is still
        running when the kill comes, however loaded the machine)"""
        if sum(r["event"] == "done" for r in records) < 2:
            return set()
        running = _running_on(records, victim.url)
        started = {r["item"]: r["time"] for r in records if r["event"] == "submitted" and r["item"] in running}
        return {item for item, at in started.items() if time.time() - at < 0.5}

    lost = _wait(out, client, victim_busy)
    victim.process.kill()  # SIGKILL mid-item: its queue and history are gone
    victim.process.wait()

    def taken_back(records):
        """the dead server's item taken back after the bounded wait"""
        return lost <= {r["item"] for r in records if r["event"] == "released"}

    _wait(out, client, taken_back)
    assert sum(r["event"] == "done" for r in _records(out)) <= ITEMS - 3, "items are left for the restarted server"
    client.kill()  # SIGKILL: what it had queued stays queued on the live servers
    client.wait()
    killed_at = time.time()
    victim.start()  # the dead server returns and rejoins
    victim.wait_ready(300)
    client = start_client()
    summary, _ = client.communicate(timeout=900)
    assert client.returncode == 0, f"{summary}\n{log.read_text()[-4000:]}"

    records = _records(out)
    done = Counter(r["item"] for r in records if r["event"] == "done")
    assert len(done) == ITEMS and set(done.values()) == {1}, "each item is done exactly once"
    videos = sorted(out.glob("*.mp4"))
    assert len(videos) == ITEMS and all(frame_count(v) == 4 for v in videos)
    # Every submission was claimed for that server first, and what the dead server held went elsewhere.
    claim: dict[str, str] = {}
    for record in records:
        if record["event"] == "claimed":
            claim[record["item"]] = record["server"]
        elif record["event"] == "submitted":
            assert claim.get(record["item"]) == record["server"], record
    rejoined = [r for r in records if r["event"] == "done" and r["server"] == victim.url and r["time"] > killed_at]
    assert rejoined, "the restarted server took items again"
    released = {r["item"] for r in records if r["event"] == "released" and r["server"] == victim.url}
    assert lost <= released, "what the dead server held was taken back after the bounded wait"
    outputs = sum((complete_videos(s.setup.output_dir) for s in servers), Counter())
    assert len(outputs) == ITEMS and set(outputs.values()) == {1}, f"an item was made twice: {outputs}"
    assert "went away" in log.read_text()
    assert sum(" done " in line for line in summary.splitlines()) >= ITEMS

    rerun = subprocess.run(args + ["-q"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("earlier run") == ITEMS and len(_records(out)) == len(records)


def test_a_server_whose_items_fail_is_set_aside_and_a_broken_item_fails_once_everywhere(servers, tmp_path, tiny_models):
    good, bad = servers[0], servers[2]
    only_here = good.setup.models / "checkpoints" / "dynamicrafter_512_tiny_copy.ckpt"
    only_here.symlink_to(
        tiny_models / "checkpoints" / TINY_FILE_NAME
    )  # the bad server lacks this model: every item fails there
    try:
        folder = tmp_path / "pictures"
        folder.mkdir()
        for n in range(4):
            Image.fromarray(np.full((64, 64, 3), 40 * n, dtype=np.uint8)).save(folder / f"p{n}.png")
        (folder / "p9_broken.png").write_bytes(b"not a picture")
        out = tmp_path / "out"
        command = [
            *BATCH,
            "--images",
            str(folder),
            "--prompt",
            "waves",
            "--out",
            str(out),
            *SMALL,
            "--ckpt-name",
            only_here.name,
            "--concurrency",
            "1",
            "--poll",
            "0.5",
            "--server",
            bad.url,
            "--server",
            good.url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    finally:
        only_here.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"server {bad.url} set aside: 2 items failed there and then ran on other servers" in result.stderr
    records = _records(out)
    done = [r for r in records if r["event"] == "done"]
    assert len(done) == 4 and {r["server"] for r in done} == {good.url}
    failed = [r for r in records if r["event"] == "failed"]
    assert len(failed) == 1 and "p9_broken.png" in failed[0]["image"]
    broken_attempts = [r for r in records if r["event"] == "attempt_failed" and r["item"] == failed[0]["item"]]
    assert not broken_attempts, "a file that is not a picture is refused before any server sees it"
    assert "not a picture" in failed[0]["error"], failed
    assert len(sorted(out.glob("*.mp4"))) == 4


def test_a_journal_of_a_single_server_run_finishes_on_several(servers, tmp_path):
    """A journal whose records name no server (as the single-server client wrote them): its unfinished item
    is looked for on every server, found finished on the one that ran it, and fetched, not sent again."""
    first, other = servers[0], servers[1]
    image = tmp_path / "p.png"
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(image)
    (tmp_path / "batch.csv").write_text("image,prompt,seed\np.png,waves,700\n")
    out = tmp_path / "out"
    base = [
        *BATCH,
        "--csv",
        str(tmp_path / "batch.csv"),
        "--out",
        str(out),
        *SMALL,
        "--poll",
        "0.5",
        "-q",
    ]
    ran = subprocess.run(base + ["--server", first.url], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    # The old client's view: submitted (no server named), killed before the video came back.
    kept = ("batch", "secret", "submitted")
    old = [{k: v for k, v in r.items() if k != "server"} for r in _records(out) if r["event"] in kept]
    (out / JOURNAL_NAME).write_text("".join(json.dumps(r) + "\n" for r in old))
    for video in out.glob("*.mp4"):
        video.unlink()
    resumed = subprocess.run(
        base + ["--server", other.url, "--server", first.url], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "found on the server" in resumed.stdout and len(list(out.glob("*.mp4"))) == 1
    records = _records(out)
    assert [r["server"] for r in records if r["event"] == "done"] == [first.url]
    assert sum(r["event"] == "submitted" for r in records) == 1, "nothing was sent again"
