"""The batch client on a Ray cluster started by the test (one machine, reachable only through loopback:
tests/support/ray_cluster.py): three workers, each with its own ComfyUI on the tiny test checkpoint, render 12
items of the shipped image-to-video workflow at 64x64. One worker's ComfyUI is SIGKILLed mid-item, another
worker's actor is SIGKILLed mid-item, then the driver is SIGKILLed and started again. Exactly 12 videos, none
rendered twice (the journal, and the complete videos in the workers' output folders), each item a task the
dashboard lists. Existing servers as workers, and the plan of a client without a checkout, come after."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dynamicrafter_batch.cluster_worker import STATE_FILE
from dynamicrafter_batch.comfy_process import server_folders
from support.batch_server import BATCH
from support.batch_videos import assert_each_item_done_once, complete_videos, journal_records, picture
from support.comfy_server import ServerSetup, comfyui_dir
from support.host_checkpoints import TINY_FILE_NAME
from support.ray_cluster import ComfyInside, RayCluster

ROOT = Path(__file__).resolve().parents[3]
ITEMS = 12
SMALL = ["--width", "64", "--height", "64", "--frames", "4", "--steps", "2", "--ckpt-name", TINY_FILE_NAME]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RayCluster(tmp_path_factory.mktemp("ray") / "ray.log", cpus=4) as started:
        yield started


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models) -> ServerSetup:
    """The pack and the tiny checkpoint, as the workers' ComfyUI loads them (an extra-model-paths file)."""
    made = ServerSetup.create(tmp_path_factory.mktemp("worker-setup"))
    (made.models / "checkpoints" / TINY_FILE_NAME).symlink_to(tiny_models / "checkpoints" / TINY_FILE_NAME)
    return made


def _until(what, driver: subprocess.Popen, timeout: float = 300):
    """Polls ``what()`` until it is truthy (the driver must keep running meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        assert driver.poll() is None, f"the driver exited early ({driver.returncode})"
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting: {what.__doc__}")


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return True


def _batch(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for n in range(count):
        picture(folder / f"p{n:02}.png", (20 * n, 100, 180 - 10 * n))
    return folder


def test_twelve_items_on_three_workers_survive_a_server_an_actor_and_the_driver_killed(cluster, setup, tmp_path):
    out, workers_dir, log = tmp_path / "out", tmp_path / "workers", tmp_path / "driver.log"
    command = [
        *BATCH,
        "--images",
        str(_batch(tmp_path, ITEMS)),
        "--prompt",
        "waves",
        "--out",
        str(out),
        *SMALL,
        "--steps",  # items of several seconds, so that the kills land mid-item
        "20",
        "--concurrency",
        "1",
        "--poll",
        "0.5",
        "--cluster",
        cluster.address,
        "--comfyui",
        str(comfyui_dir()),
        f"--comfyui-arg=--extra-model-paths-config={setup.config}",
        "--workers",
        "3",
        "--gpus-per-worker",
        "0",
        "--worker-dir",
        str(workers_dir),
    ]

    def start_driver() -> subprocess.Popen:
        with open(log, "ab") as stderr:
            return subprocess.Popen(
                cluster.command(command), stdout=subprocess.PIPE, stderr=stderr, text=True, env=cluster.env()
            )

    def state(name: str) -> dict:
        folders = list(workers_dir.glob(f"*/{name}/{STATE_FILE}"))
        return json.loads(folders[0].read_text()) if folders else {}

    def busy(name: str) -> dict:
        """the worker's ComfyUI is running an item: the worker's state, and ``prompt_id`` of that item"""
        now = state(name)
        if not now.get("url"):
            return {}
        try:
            running = cluster.get_json(now["url"] + "/queue")["queue_running"]
        except subprocess.CalledProcessError:
            return {}
        return {**now, "prompt_id": running[0][1]} if running else {}

    def done() -> int:
        return sum(r["event"] == "done" for r in journal_records(out))

    def both_busy() -> tuple[dict, dict] | None:
        """an item done, and worker-1 and worker-2 each running one"""
        pair = (busy("worker-1"), busy("worker-2")) if done() >= 1 else ({}, {})
        return pair if all(pair) else None

    driver = start_driver()
    # At once, each mid-item: a worker's ComfyUI dies (the worker starts it again and renders the item there),
    # and another worker's actor dies (Ray restarts it and retries the item; its server goes with it).
    victim, actor = _until(both_busy, driver)
    os.kill(victim["server_pid"], signal.SIGKILL)
    os.kill(actor["actor_pid"], signal.SIGKILL)
    _until(lambda: _dead(actor["server_pid"]), driver, timeout=60)
    _until(lambda: state("worker-1")["server_pid"] != victim["server_pid"], driver)
    _until(lambda: state("worker-2")["actor_pid"] != actor["actor_pid"], driver)
    # Then the driver dies with items in flight; a new one resumes from the journal.
    _until(lambda: done() >= 5 and any(busy(f"worker-{n}") for n in range(3)), driver)
    assert done() <= ITEMS - 3, "items are left for the second driver"
    driver.kill()
    driver.wait()
    killed_at = time.time()
    second = start_driver()
    summary, _ = second.communicate(timeout=900)
    assert second.returncode == 0, f"{summary}\n{log.read_text()[-4000:]}"

    records = journal_records(out)
    assert_each_item_done_once(records, out, ITEMS, frames=4)
    made = sum((complete_videos(folder / "output") for folder in workers_dir.glob("*/worker-*")), Counter())
    assert len(made) == ITEMS and set(made.values()) == {1}, f"an item was rendered twice: {made}"
    by_prompt = {r["prompt_id"]: r for r in records if r["event"] == "done"}
    assert by_prompt[victim["prompt_id"]]["server"] == "worker-1", "the killed server's item was made there"
    assert by_prompt[actor["prompt_id"]]["server"] == "worker-2", "the killed actor's item was made by its successor"
    claimed = {r["item"]: r["server"] for r in records if r["event"] == "claimed"}
    assert all(claimed[r["item"]] == r["server"] for r in records if r["event"] in ("submitted", "done"))
    for name in ("worker-0", "worker-1", "worker-2"):
        assert f"{name}: " in summary or f"{name}: " in log.read_text(), f"no throughput line for {name}"
    assert "items/min" in log.read_text()

    # Each item is a task on the dashboard; those of the second driver all finished there. (A task of the killed
    # driver may show as failed although its item is done: Ray fails the tasks of a dead job whose end it had not
    # heard of yet.)
    tasks = [t for t in cluster.tasks() if t.get("name", "").startswith("row ")]
    assert len({t["name"] for t in tasks}) == ITEMS, sorted(t["name"] for t in tasks)
    finished = {t["name"] for t in tasks if t["state"] == "FINISHED"}
    second_run = {
        f"row {r['row']}: {Path(r['image']).name}" for r in records if r["event"] == "done" and r["time"] > killed_at
    }
    assert second_run and second_run <= finished, (sorted(second_run), sorted(finished))

    again = subprocess.run(cluster.command([*command, "-q"]), capture_output=True, text=True, env=cluster.env())
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("earlier run") == ITEMS and len(journal_records(out)) == len(records)


def test_existing_servers_are_workers_too(cluster, setup, tmp_path):
    """``--server`` twice: each server becomes a worker the cluster reaches over HTTP; the summary gives each
    one's throughput."""
    servers = []
    try:
        for name in "ab":
            work = tmp_path / f"server-{name}"
            server = ComfyInside(
                cluster,
                comfyui_dir(),
                work / "comfyui.log",
                folder_args=server_folders(work),
                extra_paths=setup.config,
                env=cluster.env(),
            )
            servers.append(server.start())
        for server in servers:
            server.wait_ready(300)
        command = [*BATCH, "--images", str(_batch(tmp_path, 4)), "--out", str(tmp_path / "out"), *SMALL]
        command += ["--cluster", cluster.address, "--concurrency", "1", "--poll", "0.5"]
        for server in servers:
            command += ["--server", server.url]
        result = subprocess.run(
            cluster.command(command), capture_output=True, text=True, env=cluster.env(), timeout=600
        )
    finally:
        for server in servers:
            server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    done = [r for r in journal_records(tmp_path / "out") if r["event"] == "done"]
    assert len(done) == 4 and {r["server"] for r in done} <= {s.url for s in servers}
    for server in servers:
        assert f"{server.url}: " in result.stderr and "items/min" in result.stderr


def test_an_installed_client_without_a_checkout_plans_from_the_servers_workflow(cluster, setup, tmp_path):
    """As ``pip install`` lays it out (package dynamicrafter_batch, no workflows/ beside it): the dry run of
    a two-server batch reads the shipped workflow from the server's pack and starts nothing."""
    package = tmp_path / "site" / "dynamicrafter_batch"
    package.mkdir(parents=True)
    for module in (ROOT / "dynamicrafter_batch").glob("*.py"):
        shutil.copy(module, package / module.name)
    work = tmp_path / "server"
    server = ComfyInside(
        cluster, comfyui_dir(), work / "comfyui.log", folder_args=server_folders(work), extra_paths=setup.config
    )
    server.start()
    try:
        server.wait_ready(300)
        pictures = _batch(tmp_path, 1)
        command = [sys.executable, "-m", "dynamicrafter_batch.client", "--images", str(pictures), "--out", "out"]
        command += ["--server", server.url, "--server", "http://127.0.0.1:9", *SMALL, "--dry-run"]
        env = {**cluster.env(), "PYTHONPATH": str(tmp_path / "site")}
        result = subprocess.run(
            cluster.command(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    plan = result.stdout.strip()
    assert f"{server.url}/api/workflow_templates/" in plan and "/api/image_to_video_512.json" in plan
    assert plan.endswith(f"sent to {server.url} (or whichever is free first)")
    assert not (tmp_path / "out").exists()


def test_a_worker_the_cluster_has_no_room_for_is_given_up_instead_of_holding_the_batch(cluster, setup, tmp_path):
    """A worker asking for a GPU on a cluster without one would wait for ever: after ``--server-wait`` it is
    given up with what it asked for, and the batch ends, resumable."""
    command = [*BATCH, "--images", str(_batch(tmp_path, 2)), "--out", str(tmp_path / "out"), *SMALL]
    command += ["--cluster", cluster.address, "--comfyui", str(comfyui_dir()), "--workers", "1", "--server-wait", "5"]
    started = time.monotonic()
    result = subprocess.run(cluster.command(command), capture_output=True, text=True, env=cluster.env(), timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "worker-0 is given up: Ray found no place for it in 5 s (it asks for 1 GPU, 1 CPU)" in result.stderr
    assert result.stdout.splitlines()[-1] == "2 not run" and "run the same command again to resume" in result.stderr
    assert time.monotonic() - started < 120


def test_a_worker_still_waiting_for_room_does_not_hold_a_finished_batch(cluster, setup, tmp_path):
    """Two workers of 3 CPUs on a 4-CPU cluster: Ray places one; it renders the batch, and the batch ends then,
    not when the other's placement wait (``--server-wait``, 300 s here) runs out."""
    command = [*BATCH, "--images", str(_batch(tmp_path, 2)), "--out", str(tmp_path / "out"), *SMALL]
    command += ["--cluster", cluster.address, "--comfyui", str(comfyui_dir()), "--workers", "2", "--server-wait", "300"]
    command += [
        "--gpus-per-worker",
        "0",
        "--cpus-per-worker",
        "3",
        f"--comfyui-arg=--extra-model-paths-config={setup.config}",
    ]
    command += ["--worker-dir", str(tmp_path / "workers")]
    started = time.monotonic()
    result = subprocess.run(cluster.command(command), capture_output=True, text=True, env=cluster.env(), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "2 done" and "given up" not in result.stderr
    assert time.monotonic() - started < 240, "the batch waited for the worker Ray had no room for"
