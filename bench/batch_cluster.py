"""Items per minute of the batch client on a Ray cluster with 1 and 3 workers, and the engine's cost per item.

    python bench/batch_cluster.py [--items 12] [--workers 3] [--size 64] [--steps 2]

Starts a one-machine Ray cluster reachable only through loopback (tests/support/ray_cluster.py) and renders the
same kind of items (the shipped image-to-video workflow on the tiny test checkpoint, random weights, CPU):

- the direct client (no engine) on one warmed-up ComfyUI, against the cluster driving that same server through
  one worker (``--cluster --server``): the difference per item is what Ray adds;
- ``--workers 1`` and ``--workers N``, each worker starting its own ComfyUI: items per minute counted from the
  first finished item to the last (the start of the servers is given apart).

On a CPU the workers share the machine's cores (2 here): more workers than cores cannot go faster, and the
figures measure the engine, not a GPU farm. Needs the project's virtual environment with Ray (scripts/test sets
it up) and COMFYUI_DIR (or a ComfyUI scripts/test provisioned).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from dynamicrafter_batch.comfy_process import server_folders  # noqa: E402
from support.batch_server import BATCH  # noqa: E402
from support.batch_videos import picture  # noqa: E402
from support.comfy_server import ServerSetup, comfyui_dir  # noqa: E402
from support.host_checkpoints import TINY_FILE_NAME, write_host_checkpoint  # noqa: E402
from support.ray_cluster import ComfyInside, RayCluster  # noqa: E402
from support.reference_data import manifest_path  # noqa: E402


def pictures(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for n in range(count):
        picture(folder / f"p{n:04}.png", (n * 7 % 256, 100, 150))
    return folder


def run(cluster: RayCluster, work: Path, name: str, count: int, args: argparse.Namespace, extra: list[str]) -> dict:
    """One batch of ``count`` new items; its wall time and the times its items were done (from the journal)."""
    out = work / name
    command = [*BATCH, "--images", str(pictures(work / f"{name}-in", count))]
    command += ["--out", str(out), "--prompt", "waves", "--width", str(args.size), "--height", str(args.size)]
    command += ["--frames", "4", "--steps", str(args.steps), "--ckpt-name", TINY_FILE_NAME, "--poll", "0.5", "-q"]
    started = time.monotonic()
    result = subprocess.run(cluster.command(command + extra), capture_output=True, text=True, env=cluster.env())
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"the batch {name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    done = sorted(r["time"] for r in records if r["event"] == "done")
    claimed = min(r["time"] for r in records if r["event"] == "claimed")
    steady = (len(done) - 1) * 60.0 / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
    return {
        "seconds": seconds,
        "per_minute": count * 60.0 / seconds,
        "steady_per_minute": steady,
        "first_done_after": done[0] - claimed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="frame width and height (a multiple of 64)")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        work = Path(tmp)
        (work / "runs").mkdir()
        setup = ServerSetup.create(work / "setup")
        write_host_checkpoint(setup.models / "checkpoints" / TINY_FILE_NAME, "512", manifest_path("512"))
        with RayCluster(work / "ray.log", cpus=args.workers + 1) as cluster:
            server = ComfyInside(
                cluster,
                comfyui_dir(),
                work / "server" / "comfyui.log",
                folder_args=server_folders(work / "server"),
                extra_paths=setup.config,
                env=cluster.env(),
            )
            server.start()
            try:
                server.wait_ready(600)
                runs = work / "runs"
                run(cluster, runs, "warm", 1, args, ["--server", server.url])  # the model loads once
                direct = run(cluster, runs, "direct", args.items, args, ["--server", server.url])
                engine = run(
                    cluster, runs, "engine", args.items, args, ["--server", server.url, "--cluster", cluster.address]
                )
            finally:
                server.stop()
            own = ["--cluster", cluster.address, "--comfyui", str(comfyui_dir()), "--gpus-per-worker", "0"]
            own += [f"--comfyui-arg=--extra-model-paths-config={setup.config}", "--worker-dir", str(work / "workers")]
            one = run(cluster, runs, "one", args.items, args, [*own, "--workers", "1", "--concurrency", "1"])
            many = run(
                cluster, runs, "many", args.items, args, [*own, "--workers", str(args.workers), "--concurrency", "1"]
            )
    print(
        f"{args.items} items, {args.size}x{args.size}, 4 frames, {args.steps} steps (tiny random checkpoint, CPU), "
        f"{os.cpu_count()} CPU cores, one torch thread per ComfyUI"
    )
    print(f"direct client, 1 server:       {direct['per_minute']:6.2f} items/min ({direct['seconds']:.1f} s)")
    print(f"Ray, 1 worker on that server:  {engine['per_minute']:6.2f} items/min ({engine['seconds']:.1f} s)")
    overhead = (engine["seconds"] - direct["seconds"]) / args.items
    print(
        f"engine overhead per item:      {overhead:+.2f} s (joining Ray and placing the worker included; the first "
        f"video {engine['first_done_after']:.1f} s after its claim, {direct['first_done_after']:.1f} s direct)"
    )
    for label, figures in (("1 worker", one), (f"{args.workers} workers", many)):
        print(
            f"Ray, {label:9} (own ComfyUI): {figures['steady_per_minute']:6.2f} items/min from the first video to the "
            f"last; {figures['seconds']:.1f} s in all, the first video {figures['first_done_after']:.1f} s after the start"
        )
    print(
        f"speed-up {args.workers} workers / 1: {many['steady_per_minute'] / max(one['steady_per_minute'], 1e-9):.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
