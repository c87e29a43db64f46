#!/usr/bin/env python3
"""The engine of ``scripts/run``: one picture + a prompt -> one MP4, through a headless ComfyUI.

``scripts/run`` sets up the virtual environment and the pinned ComfyUI, then calls this with
``--comfyui DIR``. This script:

1. links the pack into ComfyUI without touching the install: ``.cache/run/custom_nodes/<pack>`` is a
   symlink to this checkout, named by an extra-model-paths YAML (``custom_nodes:``) that also adds the
   model folders (skipped when the install's own custom_nodes/ already holds this checkout);
2. gets the model: ``--model PATH`` (any file), ``--download VARIANT`` (the pack's
   DynamiCrafterModelDownload node, run on the server, resumable), or ``--demo`` (a RANDOM checkpoint
   written by ``dynamicrafter/fixtures/demo.py``: tiny UNet, full-size encoders, 1.9 GB; the video is random
   noise); downloads and the demo file live in the models folder (``models/`` in the checkout by
   default), which re-provisioning ComfyUI never touches;
3. starts ComfyUI on 127.0.0.1 at a free port (inputs, outputs and its log under ``.cache/run/``);
4. runs the picture through the batch client's engine (``dynamicrafter_batch.client``): the shipped API
   workflow ``image_to_video[_<variant>]`` (or the built-in equivalent), values set by node class, the
   picture uploaded, progress on stderr, the MP4 fetched into ``--out``;
5. prints the MP4's path on stdout, and stops the server: also on SIGTERM or Ctrl-C, which end the
   command with one line instead of a traceback. A failure is told last, after the server log's tail.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import client as batch_client
from .comfy_process import ComfyProcess, free_port, server_folders
from .run_cli import DEMO_SIZE, PACK_ROOT, argument_errors, parse_args

log = logging.getLogger("dynamicrafter.run")

PACK_NAME = "comfyui-dynamicrafter-native"
STATE_DIR = PACK_ROOT / ".cache" / "run"
DEMO_FILE = "dynamicrafter_512_demo_noise.ckpt"
NOISE_WARNING = (
    "DEMO: the checkpoint has RANDOM weights, so the video is random noise (tiny size, "
    f"{DEMO_SIZE['width']}x{DEMO_SIZE['height']}, {DEMO_SIZE['steps']} steps): it shows that "
    "the pipeline works, not what DynamiCrafter does."
)
STARTED = time.monotonic()


def say(text: str) -> None:
    """A line for the user, on stderr (stdout carries only the MP4 path)."""
    print(text, file=sys.stderr, flush=True)


def stage(text: str) -> None:
    """A step of the run, with the seconds since the command started."""
    say(f"[{time.monotonic() - STARTED:.0f}s] {text}")


class Stopped(Exception):
    """SIGTERM or SIGINT arrived: the server is stopped and the command ends with one line."""


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


# --------------------------------------------------------------------------------------------------
# ComfyUI: linking the pack, model folders, the server's folders
# --------------------------------------------------------------------------------------------------


def pack_already_installed(comfy_dir: Path) -> bool:
    """Whether ComfyUI's own custom_nodes/ already holds this checkout (then it loads it by itself)."""
    folder = comfy_dir / "custom_nodes"
    return folder.is_dir() and any(p.resolve() == PACK_ROOT for p in folder.iterdir() if p.is_dir())


def link_pack(state_dir: Path) -> Path:
    """``<state>/custom_nodes/<pack> -> this checkout``; returns the custom_nodes folder to name in the YAML."""
    folder = state_dir / "custom_nodes"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / PACK_NAME
    if link.is_symlink() and link.resolve() != PACK_ROOT:
        link.unlink()
    if not link.exists():
        link.symlink_to(PACK_ROOT, target_is_directory=True)
    return folder


def write_extra_paths(
    path: Path, custom_nodes: Path | None, checkpoint_dirs: Sequence[Path], models_dir: Path | None
) -> Path:
    """The extra-model-paths YAML: our custom_nodes folder, extra checkpoint folders, a default models folder."""

    def block(lines: list[str]) -> str:
        return "|\n" + "".join(f"      {line}\n" for line in lines)

    text = "# written by scripts/run for one server\n"
    entries = []
    if custom_nodes is not None:
        entries.append(f"    custom_nodes: {block([str(custom_nodes)])}")
    if checkpoint_dirs:
        entries.append(f"    checkpoints: {block([str(d) for d in checkpoint_dirs])}")
    if entries:
        text += "dynamicrafter_run:\n    is_default: true\n" + "".join(entries)
    if models_dir is not None:
        text += (
            f"dynamicrafter_models:\n    base_path: {models_dir}\n    is_default: true\n"
            "    checkpoints: checkpoints\n    diffusion_models: diffusion_models\n"
            "    text_encoders: text_encoders\n    clip: text_encoders\n    clip_vision: clip_vision\n"
            "    vae: vae\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


def demo_checkpoint(folder: Path) -> Path:
    """The demo checkpoint in ``folder`` (written once: 1.9 GB, about half a minute)."""
    path = folder / DEMO_FILE
    if path.is_file():
        return path
    from dynamicrafter.fixtures.demo import write_demo_checkpoint

    stage(f"writing the demo checkpoint {path} (random weights, 1.9 GB; once, then reused)")
    return write_demo_checkpoint(path, "512")


def download_label(server: str, variant: str) -> str:
    """The DynamiCrafterModelDownload choice for ``variant``: the authors' original file."""
    import asyncio

    async def options() -> list[str]:
        async with batch_client.ComfyClient(server, "run") as client:
            info = await client.object_info("DynamiCrafterModelDownload")
        spec = info.get("input", {}).get("required", {}).get("model", [[]]) if info else [[]]
        # V1 combos list their options first; V3 ones are ["COMBO", {"options": [...]}].
        return list(spec[0]) if isinstance(spec[0], list) else list(spec[1].get("options", []))

    labels = asyncio.run(options())
    if variant in labels:
        return variant
    matches = [label for label in labels if label.startswith(f"{variant} (original")]
    if not matches:
        raise SystemExit(
            f"--download {variant}: the download node offers no original file for it; choices: " + "; ".join(labels)
        )
    return matches[0]


def download_model(server: str, variant: str, progress: batch_client.Progress) -> str:
    """Run the pack's download node on the server; returns the checkpoint's name for the loader."""
    import asyncio

    label = download_label(server, variant)
    say(f"downloading (or finding) {label} with the DynamiCrafterModelDownload node")
    graph = {
        "1": {"class_type": "DynamiCrafterModelDownload", "inputs": {"model": label, "destination": "checkpoints"}}
    }
    entry = asyncio.run(batch_client.run_prompt_once(server, graph, progress))
    outcome, detail = batch_client.history_outcome(entry)
    if outcome != "done":
        raise SystemExit(f"the download failed: {detail}")
    for text in entry.get("outputs", {}).get("1", {}).get("text", []):
        say(str(text))
    # nodes/download/node.py saves the authors' files as dynamicrafter_<variant>_v1.ckpt (its _original()).
    return f"dynamicrafter_{label.split(' ', 1)[0]}_v1.ckpt"


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def use_cpu(device: str) -> bool:
    if device != "auto":
        return device == "cpu"
    try:
        import torch
    except ImportError:
        return True
    return not (torch.cuda.is_available() or getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _fail(message: str, server: ComfyProcess | None) -> int:
    """The server's log first, the error last (the line a user reads)."""
    if server is not None:
        say(f"--- the last lines of the ComfyUI log ({server.log_path}) ---\n{server.log_tail()}\n---")
    say(f"scripts/run: error: {message.strip().splitlines()[0] if message.strip() else 'unknown error'}")
    return 1


def _fresh_copy(files: list[Path], out_dir: Path) -> list[Path]:
    """Move ``--again`` outputs from their scratch folder into ``out_dir`` under names not taken yet."""
    moved = []
    for file in files:
        target, n = out_dir / file.name, 1
        while target.exists():
            target, n = out_dir / f"{file.stem}_again{n}{file.suffix}", n + 1
        moved.append(file.replace(target))
    return moved


def _run(args: argparse.Namespace, servers: list[ComfyProcess]) -> int:
    if args.comfyui is None or not (args.comfyui / "main.py").is_file():
        say(
            f"scripts/run: error: ComfyUI not found at {args.comfyui}: use scripts/run, or give --comfyui / COMFYUI_DIR"
        )
        return 2
    errors = argument_errors(args)
    for error in errors:
        say(f"scripts/run: error: {error}")
    if errors:
        return 2
    comfy_dir = args.comfyui.resolve()
    models_dir = args.models_dir.expanduser().resolve()
    out_dir = args.out.expanduser().resolve()

    checkpoint_dirs: list[Path] = []
    ckpt_name: str | None = None
    if args.model is not None:
        model = args.model.expanduser().resolve()
        checkpoint_dirs.append(model.parent)
        ckpt_name = model.name
    elif args.demo:
        say(NOISE_WARNING)
        checkpoint_dirs.append(demo_checkpoint(models_dir / "checkpoints").parent)
        ckpt_name = DEMO_FILE
        for key, value in DEMO_SIZE.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    variant = args.download or args.variant or ("512" if args.demo else None)

    # --again: a scratch journal and new server-side names, so neither the journal nor the server's earlier
    # output files stand in for the render; the video then moves into --out.
    again = f"again-{int(time.time() * 1000)}" if args.again else None
    if not again and not args.download:
        earlier = earlier_video(args, ckpt_name, variant, out_dir)
        if earlier is not None:
            return _finish(args, [earlier], out_dir, earlier=True)

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    custom_nodes = None if pack_already_installed(comfy_dir) else link_pack(STATE_DIR)
    port = args.port or free_port()
    extra = write_extra_paths(STATE_DIR / f"extra_model_paths_{port}.yaml", custom_nodes, checkpoint_dirs, models_dir)
    work = STATE_DIR / "comfyui"
    server = ComfyProcess(
        comfy_dir,
        work / f"comfyui_{port}.log",
        folder_args=server_folders(work),
        port=port,
        extra_paths=extra,
        cpu=use_cpu(args.device),
        extra_args=args.server_arg,
        # The user's own server: its download node runs alone (a shared server only runs connected ones).
        env={**os.environ, "DYNAMICRAFTER_DOWNLOADS": "any"} if args.download else None,
    )
    servers.append(server)
    stage(f"starting ComfyUI ({comfy_dir}) on {server.url}{' (CPU)' if server.cpu else ''}; log: {server.log_path}")
    progress = batch_client.Progress(1)
    batch_dir = out_dir / f".{again}" if again else out_dir
    try:
        server.start()
        server.wait_ready(args.timeout, node="DynamiCrafterCheckpointLoader")
        stage("ComfyUI is ready")
        if args.download:
            ckpt_name = download_model(server.url, args.download, progress)
        jobs = build_jobs(args, ckpt_name, variant, again)
        stage(f"workflow: {jobs[0].workflow or batch_client.DEFAULT_WORKFLOW}; rendering (progress below)")
        options = batch_client.Options(concurrency=1, poll=1.0, server_wait=30.0, retry_failed=True)
        result = batch_client.run_batch(server.url, jobs, batch_dir, options, progress)[0]
    except (RuntimeError, TimeoutError, batch_client.ServerDown) as e:
        return _fail(str(e), server)
    finally:
        extra.unlink(missing_ok=True)
    if result.status != "done":
        return _fail(result.error, server)
    files = _fresh_copy(result.files, out_dir) if again else result.files
    if again:
        for leftover in sorted(batch_dir.rglob("*"), reverse=True):
            leftover.unlink() if leftover.is_file() else leftover.rmdir()
        batch_dir.rmdir()
    return _finish(args, files, out_dir, earlier=result.note == "earlier run")


def build_jobs(args: argparse.Namespace, ckpt_name: str | None, variant: str | None, again: str | None) -> list:
    """The one batch job of this run: the picture, the prompt and the settings in the chosen workflow."""
    values = {
        "ckpt_name": ckpt_name,
        "seed": args.seed,
        "steps": args.steps,
        "fs": args.fs,
        "variant": variant,
        "width": args.width,
        "height": args.height,
        "frames": args.frames,
    }
    settings = batch_client.Settings(
        workflow=args.workflow or batch_client.DEFAULT_WORKFLOW,
        values=values,
        overrides=args.overrides,
        prefix=f"dynamicrafter_run/{again}" if again else "dynamicrafter_run",
    )
    item = batch_client.Item(row=1, image=args.image.expanduser().resolve(), prompt=args.prompt)
    return batch_client.build_jobs([item], settings)


def earlier_video(args: argparse.Namespace, ckpt_name: str | None, variant: str | None, out_dir: Path) -> Path | None:
    """The video an earlier run made in ``out_dir`` from the same picture, prompt and settings, if it is still
    there: found in the journal alone, before any server is started."""
    job = build_jobs(args, ckpt_name, variant, None)[0]
    if job.error:
        return None
    files = batch_client.earlier_files(job, out_dir)
    return None if files is None else _video(files)


def _video(files: list[Path]) -> Path:
    return next((f for f in files if f.suffix.lower() in (".mp4", ".webm", ".mov")), files[0])


def _finish(args: argparse.Namespace, files: list[Path], out_dir: Path, earlier: bool) -> int:
    if earlier:
        say(
            f"this picture, prompt and settings were rendered into {out_dir} before: returning that video "
            "without rendering (add --again to render it anew)"
        )
    else:
        stage("done")
    if args.demo:
        say(NOISE_WARNING)
    print(_video(files))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_on_signal)
    servers: list[ComfyProcess] = []
    try:
        return _run(args, servers)
    except Stopped as stopped:
        say(f"scripts/run: stopped by {stopped}; the ComfyUI server it started is stopped as well")
        return 128 + signal.Signals[str(stopped)].value
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        for server in servers:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
