#!/usr/bin/env python3
"""The engine of ``scripts/run``: one picture + a prompt -> one MP4, through a headless ComfyUI.

``scripts/run`` sets up the virtual environment and the pinned ComfyUI, then calls this with
``--comfyui DIR``. This script:

1. links the pack into ComfyUI without touching the install: ``.cache/run/custom_nodes/<pack>`` is a
   symlink to this checkout, named by an extra-model-paths YAML (``custom_nodes:``) that also adds the
   model folders (skipped when the install's own custom_nodes/ already holds this checkout);
2. gets the model: ``--model PATH`` (any file), ``--download VARIANT`` (the pack's
   DynamiCrafterModelDownload node, run on the server, resumable), or ``--demo`` (a tiny RANDOM checkpoint
   written by ``dynamicrafter/demo.py``: the video is random noise; tiny sizes so it takes a minute or two
   on a CPU);
3. starts ComfyUI on 127.0.0.1 at a free port (inputs, outputs and its log under ``.cache/run/``);
4. runs the picture through the batch client's engine (``scripts/batch_client.py``): the shipped API
   workflow ``image_to_video[_<variant>]`` (or the built-in equivalent), values set by node class, the
   picture uploaded, progress on stderr, the MP4 fetched into ``--out``;
5. prints the MP4's path on stdout, and stops the server.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Mapping, Sequence

SCRIPTS = Path(__file__).resolve().parent
PACK_ROOT = SCRIPTS.parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import batch_client  # noqa: E402  (beside this file)

log = logging.getLogger("dynamicrafter.run")

PACK_NAME = "comfyui-dynamicrafter-native"
STATE_DIR = PACK_ROOT / ".cache" / "run"
DEMO_FILE = "dynamicrafter_512_demo_noise.ckpt"
DEMO_SIZE = {"width": 128, "height": 64, "frames": 16, "steps": 3}
"""--demo defaults: the 512 variant's 512x320 frame shrunk to the 64-pixel grid, and 3 DDIM steps."""
NOISE_WARNING = ("DEMO: the checkpoint has RANDOM weights, so the video is random noise (tiny size, "
                 f"{DEMO_SIZE['width']}x{DEMO_SIZE['height']}, {DEMO_SIZE['steps']} steps): it shows that "
                 "the pipeline works, not what DynamiCrafter does.")
VARIANTS = ("256", "512", "1024", "512_interp")


def say(text: str) -> None:
    """A line for the user, on stderr (stdout carries only the MP4 path)."""
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# ComfyUI: linking the pack, model folders, the server process
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def write_extra_paths(path: Path, custom_nodes: Path | None, checkpoint_dirs: Sequence[Path],
                      models_dir: Path | None) -> Path:
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
        text += (f"dynamicrafter_models:\n    base_path: {models_dir}\n    is_default: true\n"
                 "    checkpoints: checkpoints\n    diffusion_models: diffusion_models\n"
                 "    text_encoders: text_encoders\n    clip: text_encoders\n    clip_vision: clip_vision\n"
                 "    vae: vae\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class ComfyServer:
    """A headless ComfyUI on 127.0.0.1 started from ``comfy_dir`` with ``python``; its log goes to a file."""

    def __init__(self, comfy_dir: Path, work_dir: Path, port: int | None = None, python: str = sys.executable,
                 extra_paths: Path | None = None, cpu: bool = True, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.comfy_dir = Path(comfy_dir)
        self.work_dir = Path(work_dir)
        self.port = port or free_port()
        self.python = python
        self.extra_paths = extra_paths
        self.cpu = cpu
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen | None = None
        self.log_path = self.work_dir / f"comfyui_{self.port}.log"
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        dirs = {kind: self.work_dir / kind for kind in ("input", "output", "temp", "user")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        command = [self.python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
                   "--input-directory", str(dirs["input"]), "--output-directory", str(dirs["output"]),
                   "--temp-directory", str(dirs["temp"]), "--user-directory", str(dirs["user"].resolve())]
        if self.extra_paths is not None:
            command += ["--extra-model-paths-config", str(self.extra_paths)]
        if self.cpu:
            command.append("--cpu")
        return command + self.extra_args

    def start(self) -> "ComfyServer":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), cwd=self.comfy_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, env=self.env)
        return self

    def wait_ready(self, timeout: float = 600.0, node: str = "DynamiCrafterCheckpointLoader") -> None:
        """Until the server answers with ``node`` registered; raises with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/object_info/{node}", timeout=5) as response:
                    if node in response.read().decode("utf-8", "replace"):
                        return
                    raise RuntimeError(f"ComfyUI started without the {node} node (the pack did not load):\n"
                                       f"{self.log_tail()}")
            except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, grace: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


def demo_checkpoint(folder: Path) -> Path:
    """The demo checkpoint in ``folder`` (written once, about 2 GB, half a minute)."""
    path = folder / DEMO_FILE
    if path.is_file():
        return path
    if str(PACK_ROOT) not in sys.path:
        sys.path.insert(0, str(PACK_ROOT))
    from dynamicrafter.demo import write_demo_checkpoint

    say(f"writing the demo checkpoint {path} (random weights, about 2 GB; once)")
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
        raise SystemExit(f"--download {variant}: the download node offers no original file for it; choices: "
                         + "; ".join(labels))
    return matches[0]


def download_model(server: str, variant: str, progress: batch_client.Progress) -> str:
    """Run the pack's download node on the server; returns the checkpoint's name for the loader."""
    import asyncio

    label = download_label(server, variant)
    say(f"downloading (or finding) {label} with the DynamiCrafterModelDownload node")
    graph = {"1": {"class_type": "DynamiCrafterModelDownload", "inputs": {"model": label, "destination": "checkpoints"}}}
    entry = asyncio.run(batch_client.run_prompt_once(server, graph, progress))
    outcome, detail = batch_client.history_outcome(entry)
    if outcome != "done":
        raise SystemExit(f"the download failed: {detail}")
    for text in entry.get("outputs", {}).get("1", {}).get("text", []):
        say(str(text))
    # nodes/download.py saves the authors' files as dynamicrafter_<variant>_v1.ckpt (its _original()).
    return f"dynamicrafter_{label.split(' ', 1)[0]}_v1.ckpt"


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/run", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Animate one picture with DynamiCrafter in a headless ComfyUI; prints the MP4's path.",
        epilog="examples:\n  scripts/run --demo --image photo.png --prompt \"waves\"\n"
               "  scripts/run --download 512 --image photo.png --prompt \"a boat sailing\"\n"
               "  scripts/run --model ~/models/dynamicrafter_1024_v1_bf16.safetensors --variant 1024 --image photo.png")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="a DynamiCrafter checkpoint file (original .ckpt or Kijai's full bf16)")
    model.add_argument("--download", choices=VARIANTS, metavar="VARIANT",
                       help=f"download the authors' checkpoint ({', '.join(VARIANTS)}; 10.4 GB) into ComfyUI's "
                            "models/checkpoints (or --models-dir), resuming a partial download")
    model.add_argument("--demo", action="store_true",
                       help="a tiny checkpoint with RANDOM weights (the video is noise): checks the set-up in a minute "
                            "or two on a CPU")
    parser.add_argument("--image", type=Path, required=True, help="the picture to animate")
    parser.add_argument("--prompt", default="", help="what should move, e.g. \"waves crashing on the rocks\"")
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the MP4 (default ./outputs)")
    parser.add_argument("--variant", choices=("auto",) + VARIANTS, help="the model variant (default: from the file)")
    parser.add_argument("--workflow", default=batch_client.DEFAULT_WORKFLOW,
                        help="shipped workflow name or API-format JSON (default image_to_video[_<variant>])")
    parser.add_argument("--seed", type=int, help="default: the workflow's (123)")
    parser.add_argument("--steps", type=int, help=f"DDIM steps (default: the workflow's 50; --demo {DEMO_SIZE['steps']})")
    parser.add_argument("--fs", type=int, help="frame stride / fps conditioning (0: the variant's default)")
    parser.add_argument("--width", type=int, help="video width, a multiple of 64 (default: the variant's)")
    parser.add_argument("--height", type=int, help="video height, a multiple of 64")
    parser.add_argument("--frames", type=int, help="frames (default 16)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="CLASS.INPUT=VALUE",
                        help="set any workflow input by node class (repeatable)")
    parser.add_argument("--models-dir", type=Path,
                        help="a models folder (checkpoints/, ...) searched first and used for downloads and the demo file")
    parser.add_argument("--comfyui", type=Path, default=os.environ.get("COMFYUI_DIR"),
                        help="the ComfyUI folder (scripts/run passes the pinned one)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: the GPU when torch sees one, else --cpu")
    parser.add_argument("--port", type=int, help="default: a free port")
    parser.add_argument("--server-arg", action="append", default=[], help="an extra argument for ComfyUI's main.py")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for ComfyUI to start")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def use_cpu(device: str) -> bool:
    if device != "auto":
        return device == "cpu"
    try:
        import torch
    except ImportError:
        return True
    return not (torch.cuda.is_available() or getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if args.comfyui is None or not (args.comfyui / "main.py").is_file():
        say(f"error: ComfyUI not found at {args.comfyui}: use scripts/run, or give --comfyui / COMFYUI_DIR")
        return 2
    if not args.image.is_file():
        say(f"error: no such picture: {args.image}")
        return 2
    comfy_dir = args.comfyui.resolve()
    models_dir = args.models_dir.expanduser().resolve() if args.models_dir else None
    out_dir = args.out.expanduser().resolve()

    checkpoint_dirs: list[Path] = []
    ckpt_name: str | None = None
    if args.model is not None:
        model = args.model.expanduser().resolve()
        if not model.is_file():
            say(f"error: no such model file: {model}")
            return 2
        checkpoint_dirs.append(model.parent)
        ckpt_name = model.name
    elif args.demo:
        say(NOISE_WARNING)
        folder = (models_dir / "checkpoints") if models_dir else PACK_ROOT / ".cache" / "demo-models" / "checkpoints"
        checkpoint_dirs.append(demo_checkpoint(folder).parent)
        ckpt_name = DEMO_FILE
        for key, value in DEMO_SIZE.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    variant = args.download or args.variant or ("512" if args.demo else None)

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    custom_nodes = None if pack_already_installed(comfy_dir) else link_pack(STATE_DIR)
    port = args.port or free_port()
    extra = write_extra_paths(STATE_DIR / f"extra_model_paths_{port}.yaml", custom_nodes, checkpoint_dirs, models_dir)
    server = ComfyServer(comfy_dir, STATE_DIR / "comfyui", port, sys.executable, extra, use_cpu(args.device),
                         args.server_arg)
    say(f"starting ComfyUI ({comfy_dir}) on {server.url}{' (CPU)' if server.cpu else ''}; log: {server.log_path}")
    progress = batch_client.Progress(1)
    try:
        with server:
            server.wait_ready(args.timeout)
            if args.download:
                ckpt_name = download_model(server.url, args.download, progress)
            values = {"ckpt_name": ckpt_name, "seed": args.seed, "steps": args.steps, "fs": args.fs,
                      "variant": variant, "width": args.width, "height": args.height, "frames": args.frames}
            settings = batch_client.Settings(workflow=args.workflow, values=values, overrides=args.overrides,
                                             prefix="dynamicrafter_run")
            item = batch_client.Item(row=1, image=args.image.expanduser().resolve(), prompt=args.prompt)
            jobs = batch_client.build_jobs([item], settings)
            say(f"workflow: {jobs[0].workflow or args.workflow}")
            options = batch_client.Options(concurrency=1, poll=1.0, server_wait=30.0, retry_failed=True)
            result = batch_client.run_batch(server.url, jobs, out_dir, options, progress)[0]
    except (RuntimeError, TimeoutError, batch_client.ServerDown) as e:
        say(f"error: {e}")
        return 1
    finally:
        extra.unlink(missing_ok=True)
    if result.status != "done":
        say(f"error: {result.error}\n--- ComfyUI log ({server.log_path}) ---\n{server.log_tail()}")
        return 1
    videos = [f for f in result.files if f.suffix.lower() in (".mp4", ".webm", ".mov")] or result.files
    if args.demo:
        say(NOISE_WARNING)
    print(videos[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
