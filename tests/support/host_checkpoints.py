"""DynamiCrafter files for host tests: the demo checkpoint of ``dynamicrafter.demo`` in every file layout.

The host builds its text encoder and CLIP vision from their known full sizes, so those parts are
full-size (random, small-std weights, fp16); the UNet keeps every feature at a tiny width, with the real
context width (1024) and CLIP width (1280) so real encoders can drive it. All of it comes from
``dynamicrafter/demo.py``; this module adds the file layouts and a cache of the big encoder weights
(made once per machine under ``.cache/test-models``). The host files keep the ``embedder.`` part's
text-side leftovers, as the released files do.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dynamicrafter.demo import (DEMO_RESAMPLER, DEMO_UNET, DEMO_VAE, demo_state_dict, openclip_h_key_shapes,
                                openclip_h_state_dict, write_demo_checkpoint)

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "test-models"
ENCODERS_FILE = CACHE / "openclip_h_random_v1.safetensors"
DEMO_MODELS = CACHE / "run-demo"
"""A models folder (``checkpoints/``) holding the demo file the server tests share (``scripts/run --models-dir``)."""
DEMO_FILE_NAME = "dynamicrafter_512_demo_noise.ckpt"

HOST_UNET = DEMO_UNET
HOST_RESAMPLER = DEMO_RESAMPLER
TINY_VAE = DEMO_VAE


def encoder_state_dict(manifest_path: Path) -> dict[str, torch.Tensor]:
    """Full-size random ``cond_stage_model.*`` and ``embedder.*`` weights (fp16), cached on disk.

    A new cache is checked against the manifest's keys and shapes before it is written.
    """
    if ENCODERS_FILE.is_file():
        return load_file(str(ENCODERS_FILE))
    manifest = json.loads(Path(manifest_path).read_text())["keys"]
    expected = {k: tuple(v) for k, v in manifest.items() if k.startswith(("cond_stage_model.", "embedder."))}
    if expected != openclip_h_key_shapes(embedder_text_leftovers=True):
        raise AssertionError(f"dynamicrafter.demo's OpenCLIP-H keys differ from {manifest_path}")
    sd = openclip_h_state_dict(seed=0, embedder_text_leftovers=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = ENCODERS_FILE.with_suffix(".partial")
    save_file(sd, str(partial))
    partial.replace(ENCODERS_FILE)
    return sd


def vae_state_dict(seed: int = 3) -> dict[str, torch.Tensor]:
    """A narrow SD-layout KL VAE (keys as in ``first_stage_model.``), random weights."""
    from dynamicrafter.demo import vae_state_dict as demo_vae

    return demo_vae(DEMO_VAE, seed)


def host_state_dict(variant: str, manifest_path: Path, with_encoders: bool = True) -> dict[str, torch.Tensor]:
    """A complete original-layout state dict whose networks run in the host on CPU in seconds."""
    encoders = encoder_state_dict(manifest_path) if with_encoders else None
    return demo_state_dict(variant, with_encoders=with_encoders, embedder_text_leftovers=True, encoders=encoders)


def write_host_checkpoint(path: Path, variant: str, manifest_path: Path, layout: str = "ckpt") -> Path:
    """``ckpt``: original Lightning dict; ``bf16``: Kijai's full bf16 file; ``pruned``: fp16 UNet+VAE+Resampler."""
    if layout not in ("ckpt", "bf16", "pruned"):
        raise ValueError(f"unknown layout {layout!r}")
    sd = host_state_dict(variant, manifest_path, with_encoders=layout != "pruned")
    if layout == "ckpt":
        torch.save({"state_dict": sd}, path)
    elif layout == "bf16":
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, str(path))
    else:
        save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    return path


def write_demo_file(path: Path) -> Path:
    """``dynamicrafter.demo``'s checkpoint, from the cached encoders when they are there (seconds, not a minute)."""
    encoders = load_file(str(ENCODERS_FILE)) if ENCODERS_FILE.is_file() else None
    return write_demo_checkpoint(path, "512", encoders=encoders)


def shared_demo_checkpoint() -> Path:
    """The demo checkpoint under :data:`DEMO_MODELS`, written once in a subprocess (the test process never
    holds the 2 GB of encoder weights while a server loads them too)."""
    import subprocess
    import sys

    path = DEMO_MODELS / "checkpoints" / DEMO_FILE_NAME
    if not path.is_file():
        code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests']; "
                "from pathlib import Path; from support.host_checkpoints import write_demo_file; "
                "write_demo_file(Path(sys.argv[2]))")
        subprocess.run([sys.executable, "-c", code, str(ROOT), str(path)], check=True)
    return path
