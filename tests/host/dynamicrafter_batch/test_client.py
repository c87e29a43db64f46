"""The API batch client (dynamicrafter_batch/client.py) on a real headless ComfyUI: 20 items with the client and the
server SIGKILLed mid-way finish with exactly 20 outputs, none run twice; a broken picture is reported and the
rest complete (refused before upload). ``tests/host/dynamicrafter_batch/test_client_security.py`` has the attacks;
``tests/unit/dynamicrafter_batch/test_client.py`` checks its parts without a server."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from support.batch_server import BATCH, TINY, TINY_CKPT, batch_server, server_dir
from support.batch_videos import assert_each_item_done_once, complete_videos, journal_records, picture

ROOT = Path(__file__).resolve().parents[3]

ITEMS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models):
    yield from batch_server(tmp_path_factory.mktemp("batch-server"), tiny_models)


def _client(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as stderr:
        return subprocess.Popen([*BATCH, *args], stdout=subprocess.PIPE, stderr=stderr, text=True)


def _in_flight(records: list[dict]) -> set[str]:
    done = {r["item"] for r in records if r["event"] in ("done", "failed")}
    return {r["item"] for r in records if r["event"] == "submitted"} - done


def _wait_until_busy(out: Path, count: int, process: subprocess.Popen, timeout: float = 300) -> set[str]:
    """Once ``count`` items are done and at least one is queued on the server: the items in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = journal_records(out)
        busy = _in_flight(records)
        if sum(r["event"] == "done" for r in records) >= count and busy:
            return busy
        assert process.poll() is None, f"the client exited early ({process.returncode})"
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} items done after {timeout} s")


def _wait_for_log(log: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until the client's log (``--verbose``) says ``text``."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, f"the client exited early ({process.returncode})"
        assert time.monotonic() < deadline, f"the client's log never said {text!r} in {timeout} s"
        time.sleep(0.1)


def test_twenty_items_survive_client_and_server_kills(server, tmp_path):
    image = picture(tmp_path / "photo.png")
    rows = "".join(f"{image.name},waves crashing,{seed},,,\n" for seed in range(1, ITEMS + 1))
    (tmp_path / "batch.csv").write_text("image,prompt,seed,fs,variant,steps\n" + rows)
    out, log = tmp_path / "out", tmp_path / "client.log"
    args = [
        "--csv",
        str(tmp_path / "batch.csv"),
        "--out",
        str(out),
        "--server",
        server.url,
        *TINY_CKPT,
        *TINY,
        "--concurrency",
        "2",
        "--poll",
        "0.5",
        "--server-wait",
        "300",
        "--verbose",  # the log says when the client sees the server go
    ]

    client = _client(args, log)
    queued_by_killed_client = _wait_until_busy(out, 3, client)
    client.kill()  # SIGKILL: what it had queued stays queued on the server
    client.wait()

    client = _client(args, log)
    _wait_until_busy(out, 9, client)
    server.kill()  # SIGKILL: the server forgets its queue and history
    # What it lost: the items in flight once the client saw the server go (one it finished in the instant before
    # is in the journal by then; none can finish while the server is away).
    _wait_for_log(log, "is unreachable", client)
    lost_by_killed_server = _in_flight(journal_records(out))
    assert lost_by_killed_server, "the server was killed with nothing in flight: the test checks nothing"
    # Videos it had finished writing (their items may not have reached the client): found there after the restart.
    on_disk_at_kill = complete_videos(server.log_path.parent / "output")
    server.start()
    server.wait_ready(300)
    summary, _ = client.communicate(timeout=900)
    assert client.returncode == 0, f"{summary}\n{log.read_text()[-3000:]}"

    records = journal_records(out)
    assert_each_item_done_once(records, out, ITEMS, frames=8)
    submitted = Counter(r["item"] for r in records if r["event"] == "submitted")
    requeued = {r["item"] for r in records if r["event"] == "requeued"}
    # What the killed client had queued is followed, not sent again ...
    for key in queued_by_killed_client - lost_by_killed_server:
        assert submitted[key] == 1 and key not in requeued, key
    # ... what the killed server lost is sent again, unless its complete video was already on disk.
    prefix = {r["item"]: uuid.UUID(r["prompt_id"]).hex[:20] for r in records if r["event"] == "submitted"}
    for key in lost_by_killed_server:  # outputs are named by the prompt id (batch_items.Job.bind)
        assert key in requeued or prefix[key] in on_disk_at_kill, key
    assert sum(submitted.values()) <= ITEMS + len(lost_by_killed_server), submitted
    outputs = complete_videos(server.log_path.parent / "output")
    assert len(outputs) == ITEMS and set(outputs.values()) == {1}, f"an item ran twice on the server: {outputs}"
    assert summary.count(" done ") >= ITEMS

    rerun = subprocess.run([*BATCH, *args], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("earlier run") == ITEMS
    assert len(journal_records(out)) == len(records), "a finished batch sends nothing again"


def test_broken_picture_is_reported_and_the_rest_complete(server, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    picture(folder / "a.png", (200, 30, 30))
    picture(folder / "c.png", (30, 200, 30))
    (folder / "b_broken.png").write_bytes(b"this is not a picture")
    out = tmp_path / "out"
    args = [
        "--images",
        str(folder),
        "--prompt",
        "waves",
        "--out",
        str(out),
        "--server",
        server.url,
        *TINY_CKPT,
        *TINY,
        "--poll",
        "0.5",
        "-q",
    ]
    result = subprocess.run([*BATCH, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = next(line for line in result.stdout.splitlines() if "b_broken.png" in line)
    assert " failed " in broken and "not a picture" in broken
    assert sorted(p.name.split("_")[0] for p in out.glob("*.mp4")) == ["a", "c"]
    failed = [r for r in journal_records(out) if r["event"] == "failed"]
    assert len(failed) == 1 and "nothing was uploaded" in failed[0]["error"]
    uploaded = [p.read_bytes() for p in server_dir(server, "input").rglob("*") if p.is_file()]
    assert uploaded and b"this is not a picture" not in uploaded, "refused before upload: the server never got it"

    again = subprocess.run([*BATCH, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1
    assert "skipped" in next(line for line in again.stdout.splitlines() if "b_broken.png" in line)
    assert again.stdout.count("earlier run") == 2
