#!/usr/bin/env python3
"""The command line of ``scripts/run``, and its checks of the arguments before anything is set up.

Standard library only: ``scripts/run`` calls ``python3 -m dynamicrafter_batch.run_cli ARGS`` first, so a missing
picture, a text file given as the picture or a model file of the wrong kind is told in one line, in a
second, before the virtual environment, ComfyUI and the server (minutes on a first run).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .graph import add_set_option

PACK_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = PACK_ROOT / "models"
"""Downloads and the demo model: beside the checkout, never inside the provisioned ComfyUI (which
re-provisioning deletes). ``DYNAMICRAFTER_MODELS`` or ``--models-dir`` choose another folder."""
DEMO_SIZE = {"width": 128, "height": 64, "frames": 16, "steps": 3}
"""--demo defaults: the 512 variant's 512x320 frame shrunk to the 64-pixel grid, and 3 DDIM steps."""


def _load(relative: str) -> ModuleType:
    """A standard-library-only module of the pack, loaded by path (the pack's packages import torch)."""
    path = PACK_ROOT / relative
    spec = importlib.util.spec_from_file_location(f"dynamicrafter_run_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


file_kind = _load("dynamicrafter/file_kind.py")
VARIANTS = tuple(_load("dynamicrafter/config.py").VARIANTS)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Animate one picture with DynamiCrafter in a headless ComfyUI; prints the MP4's path.",
        epilog='examples:\n  scripts/run --demo --image photo.png --prompt "waves"\n'
        '  scripts/run --download 512 --image photo.png --prompt "a boat sailing"\n'
        "  scripts/run --model ~/models/dynamicrafter_1024_v1_bf16.safetensors --variant 1024 --image photo.png",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model", type=Path, help="a DynamiCrafter checkpoint file (original .ckpt or Kijai's full bf16)"
    )
    model.add_argument(
        "--download",
        choices=VARIANTS,
        metavar="VARIANT",
        help=f"download the authors' checkpoint ({', '.join(VARIANTS)}; 10.4 GB) into the models "
        "folder's checkpoints/ (see --models-dir), resuming a partial download",
    )
    model.add_argument(
        "--demo",
        action="store_true",
        help="a small checkpoint with RANDOM weights (the video is noise; 1.9 GB, written once into "
        "the models folder): checks the set-up on a CPU",
    )
    parser.add_argument("--image", type=Path, required=True, help="the picture to animate")
    parser.add_argument("--prompt", default="", help='what should move, e.g. "waves crashing on the rocks"')
    parser.add_argument("--out", type=Path, default=Path("outputs"), help="folder for the MP4 (default ./outputs)")
    parser.add_argument(
        "--again",
        action="store_true",
        help="render again even when the same picture, prompt and settings were rendered into --out "
        "before (by default that earlier video is returned, and the run says so)",
    )
    parser.add_argument("--variant", choices=("auto",) + VARIANTS, help="the model variant (default: from the file)")
    parser.add_argument(
        "--workflow", help="shipped workflow name or API-format JSON (default image_to_video[_<variant>])"
    )
    parser.add_argument("--seed", type=int, help="default: the workflow's (123)")
    parser.add_argument(
        "--steps", type=int, help=f"DDIM steps (default: the workflow's 50; --demo {DEMO_SIZE['steps']})"
    )
    parser.add_argument("--fs", type=int, help="frame stride / fps conditioning (0: the variant's default)")
    parser.add_argument("--width", type=int, help="video width, a multiple of 64 (default: the variant's)")
    parser.add_argument("--height", type=int, help="video height, a multiple of 64")
    parser.add_argument("--frames", type=int, help="frames (default 16)")
    add_set_option(parser, "set any workflow input by node class (repeatable)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("DYNAMICRAFTER_MODELS", DEFAULT_MODELS)),
        help="models folder (checkpoints/, ...): searched first, and where --download and --demo "
        "save (default: models/ in this checkout, or $DYNAMICRAFTER_MODELS)",
    )
    parser.add_argument(
        "--comfyui",
        type=Path,
        default=os.environ.get("COMFYUI_DIR"),
        help="the ComfyUI folder (scripts/run passes the one it provisions)",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "gpu"), default="auto", help="auto: the GPU when torch sees one, else --cpu"
    )
    parser.add_argument("--port", type=int, help="default: a free port")
    parser.add_argument("--server-arg", action="append", default=[], help="an extra argument for ComfyUI's main.py")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for ComfyUI to start")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


KIND_NAMES = {
    "empty": "an empty file",
    "lfs_pointer": "a Git LFS pointer, not the file it stands for",
    "html": "an HTML page",
    "json": "a JSON text",
    "text": "a text file",
    "unknown": "a file of unknown kind",
}
"""How the one-line errors name what a file is (``file_kind.sniff``'s kinds that are no model)."""


def _what(path: Path) -> str:
    picture = file_kind.image_kind(path)
    if picture is not None:
        return f"a {picture} picture"
    kind = file_kind.sniff(path)
    return file_kind.DESCRIPTIONS.get(kind) or KIND_NAMES[kind]


def argument_errors(args: argparse.Namespace) -> list[str]:
    """What is wrong with the picture and the model file, each with what to do; empty when both are fine."""
    errors = []
    image = args.image.expanduser()
    if not image.is_file():
        errors.append(f"--image {args.image}: no such file")
    elif file_kind.image_kind(image) is None:
        errors.append(
            f"--image {args.image}: not a picture (it is {_what(image)}); give a PNG, JPEG, WebP, BMP, GIF or TIFF file"
        )
    if args.model is not None:
        model = args.model.expanduser()
        if not model.is_file():
            errors.append(f"--model {args.model}: no such file")
        elif file_kind.sniff(model) not in file_kind.DESCRIPTIONS:
            errors.append(
                f"--model {args.model}: this is {_what(model)}, not a checkpoint; give the DynamiCrafter "
                ".ckpt or .safetensors file itself (or --download VARIANT)"
            )
    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and (value < 64 or value % 64):
            errors.append(f"--{name} {value}: use a multiple of 64 (e.g. 512 x 320 for the 512 variant)")
    if args.steps is not None and args.steps < 1:
        errors.append(f"--steps {args.steps}: use 1 or more")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    """Check the arguments (for ``scripts/run``, before its set-up): exit 2 with one line per problem."""
    args = parse_args(argv)
    errors = argument_errors(args)
    for error in errors:
        print(f"scripts/run: error: {error}", file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
