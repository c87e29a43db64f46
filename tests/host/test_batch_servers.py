"""One journal across three real ComfyUI servers (tests/support/comfy_server.py) on 127.0.0.1: 12 items of the
shipped image-to-video workflow at 64x64, 2 steps, on the shared demo checkpoint; one server SIGKILLed mid-item
and started again later, the client SIGKILLed and started again once. Exactly 12 videos, none made twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support.comfy_server import ComfyServer, ServerSetup
from support.host_checkpoints import DEMO_FILE_NAME, shared_demo_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BATCH = ROOT / "scripts" / "batch_client.py"
if str(BATCH.parent) not in sys.path:
    sys.path.insert(0, str(BATCH.parent))

import batch_items  # noqa: E402
import batch_outputs  # noqa: E402
from batch_journal import JOURNAL_NAME  # noqa: E402

ITEMS = 12
SMALL = ["--width", "64", "--height", "64", "--frames", "4", "--steps", "2", "--ckpt-name", DEMO_FILE_NAME]


def _comfyui_dir() -> Path:
    value = os.environ.get("COMFYUI_DIR")
    return Path(value).resolve() if value else ROOT / ".cache" / "comfyui"


@pytest.fixture(scope="module")
def servers(tmp_path_factory, monkeypatch_module):
    comfy_dir = _comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        pytest.fail(f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR")
    ckpt = shared_demo_checkpoint()
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


def _complete_videos(server: ComfyServer) -> Counter:
    """Complete videos per item prefix the server wrote."""
    counts: Counter = Counter()
    for path in (server.setup.output_dir / batch_items.DEFAULT_PREFIX).glob("*.mp4"):
        if batch_outputs.is_complete(path.read_bytes(), "mp4"):
            counts[path.name.rsplit("_", 2)[0]] += 1
    return counts


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def test_one_journal_across_three_servers_survives_a_server_and_a_client_kill(servers, tmp_path):
    image = tmp_path / "photo.png"
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (220, 120, 40)
    Image.fromarray(pixels).save(image)
    (tmp_path / "batch.csv").write_text("image,prompt,seed\n" + "".join(f"photo.png,waves,{seed}\n"
                                                                      for seed in range(1, ITEMS + 1)))
    out, log = tmp_path / "out", tmp_path / "client.log"
    args = [sys.executable, str(BATCH), "--csv", str(tmp_path / "batch.csv"), "--out", str(out), *SMALL,
            "--concurrency", "1", "--poll", "0.5", "--reassign-after", "15", "--server-wait", "300"]
    for server in servers:
        args += ["--server", server.url]
    victim = servers[1]

    def start_client() -> subprocess.Popen:
        with open(log, "ab") as stderr:
            return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)

    client = start_client()

    def victim_busy(records):
        """two items done and one running on the second server"""
        return sum(r["event"] == "done" for r in records) >= 2 and _running_on(records, victim.url)

    lost = _wait(out, client, victim_busy)
    victim.process.kill()  # SIGKILL mid-item: its queue and history are gone
    victim.process.wait()

    def taken_back(records):
        """the dead server's item taken back after the bounded wait, and five items done"""
        released = {r["item"] for r in records if r["event"] == "released"}
        return lost <= released and sum(r["event"] == "done" for r in records) >= 5

    _wait(out, client, taken_back)
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
    assert len(videos) == ITEMS and all(_frames(v) == 4 for v in videos)
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
    outputs = sum((_complete_videos(s) for s in servers), Counter())
    assert len(outputs) == ITEMS and set(outputs.values()) == {1}, f"an item was made twice: {outputs}"
    assert "went away" in log.read_text()
    assert sum(" done " in line for line in summary.splitlines()) >= ITEMS

    rerun = subprocess.run(args + ["-q"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("earlier run") == ITEMS and len(_records(out)) == len(records)
