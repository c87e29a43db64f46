"""Items per minute of the batch client with one ComfyUI server against several, on this machine.

    python bench/batch_servers.py [--items 12] [--servers 3] [--size 64] [--steps 2] [--threads 1]

Starts ``--servers`` headless ComfyUI servers on 127.0.0.1 (CPU, tests/support/comfy_server.py) with the
pack and the tiny test checkpoint (random weights, tests/support/host_checkpoints.py), warms each one up
with an item (the model load is not counted), then runs the same ``--items`` through
``dynamicrafter_batch.client`` on the first server alone and on all of them, and prints the figures.
On a CPU the servers share the cores: the speed-up is bounded by the cores, not by the client.
Needs COMFYUI_DIR (or a ComfyUI scripts/test provisioned) and the project's virtual environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.batch_server import BATCH  # noqa: E402
from support.comfy_server import ComfyServer, ServerSetup, comfyui_dir  # noqa: E402
from support.host_checkpoints import TINY_FILE_NAME, write_host_checkpoint  # noqa: E402
from support.reference_data import manifest_path  # noqa: E402


def start_servers(count: int, work: Path, comfy_dir: Path) -> list[ComfyServer]:
    ckpt = write_host_checkpoint(work / TINY_FILE_NAME, "512", manifest_path("512"))
    servers = []
    for n in range(count):
        setup = ServerSetup.create(work / f"server{n}")
        (setup.models / "checkpoints" / ckpt.name).symlink_to(ckpt)
        server = ComfyServer(comfy_dir, setup, work / f"server{n}.log")
        server.start()
        servers.append(server)
    for server in servers:
        server.wait_ready(600)
    return servers


def run_client(servers: list[ComfyServer], csv: Path, out: Path, size: int, steps: int) -> float:
    """Seconds the client took for the CSV's items."""
    command = [
        *BATCH,
        "--csv",
        str(csv),
        "--out",
        str(out),
        "--width",
        str(size),
        "--height",
        str(size),
        "--frames",
        "4",
        "--steps",
        str(steps),
        "--ckpt-name",
        TINY_FILE_NAME,
        "--concurrency",
        "1",
        "--poll",
        "0.5",
        "-q",
    ]
    for server in servers:
        command += ["--server", server.url]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the batch failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def write_items(folder: Path, seeds: range) -> Path:
    picture = folder / "photo.png"
    if not picture.is_file():
        pixels = np.zeros((64, 64, 3), dtype=np.uint8)
        pixels[:, :32] = (220, 120, 40)
        Image.fromarray(pixels).save(picture)
    csv = folder / f"items_{seeds.start}_{seeds.stop}.csv"
    csv.write_text("image,prompt,seed\n" + "".join(f"{picture.name},waves,{seed}\n" for seed in seeds))
    return csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="frame width and height (a multiple of 64)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS of each server")
    args = parser.parse_args()
    comfy_dir = comfyui_dir()
    os.environ["OMP_NUM_THREADS"] = args.threads
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        work = Path(tmp)
        servers = start_servers(args.servers, work, comfy_dir)
        try:
            for n, server in enumerate(servers):  # warm-up: each server loads the model once
                run_client(
                    [server], write_items(work, range(10_000 + n, 10_001 + n)), work / f"warm{n}", args.size, args.steps
                )
            one = run_client(
                servers[:1], write_items(work, range(1, args.items + 1)), work / "one", args.size, args.steps
            )
            many = run_client(
                servers, write_items(work, range(1_000, 1_000 + args.items)), work / "many", args.size, args.steps
            )
        finally:
            for server in servers:
                server.stop()
    print(
        f"{args.items} items, {args.size}x{args.size}, 4 frames, {args.steps} steps, {os.cpu_count()} CPU cores, "
        f"OMP_NUM_THREADS={args.threads} per server"
    )
    print(f"1 server:  {args.items * 60 / one:6.2f} items/min ({one:.1f} s)")
    print(f"{args.servers} servers: {args.items * 60 / many:6.2f} items/min ({many:.1f} s), {one / many:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
