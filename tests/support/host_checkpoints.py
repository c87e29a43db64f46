"""DynamiCrafter files for host tests: small networks in every released file layout.

Everything comes from ``dynamicrafter/fixtures/demo.py`` at :data:`HOST_SIZES`: the UNet and Resampler keep every
feature at a tiny width, and the text and image encoders are OpenCLIP towers in the released key layout,
narrowed (width 64, three text blocks and two vision blocks). The pack builds the host's encoders from whatever sizes a file has, so
these load through exactly the path a released file takes, in a fraction of a second instead of the
seconds per call that full-size encoders cost on a CPU. Where the real sizes are the point (the encoder
oracle, the demo checkpoint of ``scripts/run``), tests use the full-size ones. The host files keep the
``embedder.`` part's text-side leftovers, as the released files do.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.fixtures.demo import DEMO_RESAMPLER, DEMO_UNET, DemoSizes, demo_state_dict, openclip_h_key_shapes

TEXT_WIDTH = 64
VISION_WIDTH = 64
HOST_SIZES = DemoSizes(
    unet=replace(DEMO_UNET, context_dim=TEXT_WIDTH),
    resampler=replace(DEMO_RESAMPLER, embedding_dim=VISION_WIDTH, output_dim=TEXT_WIDTH),
    text={"width": TEXT_WIDTH, "layers": 3, "context": 77, "vocab": 49408, "embed_dim": TEXT_WIDTH},
    vision={"width": VISION_WIDTH, "layers": 2, "patch": 14, "image": 224, "embed_dim": TEXT_WIDTH},
)
"""Tiny UNet and Resampler, and OpenCLIP towers 64 wide (three text blocks: the penultimate one is read; two vision blocks) (ViT-H/14's patch, image size,
vocabulary and text length, so the tokens keep their real counts: 77 text, 257 image)."""

DEMO_FILE_NAME = "dynamicrafter_512_demo_noise.ckpt"
"""The full-size demo checkpoint of ``scripts/run --demo`` (the ``demo_models`` fixture)."""
TINY_FILE_NAME = "dynamicrafter_512_tiny.ckpt"
"""A 512 file at :data:`HOST_SIZES` (the ``tiny_models`` fixture)."""

HOST_UNET = HOST_SIZES.unet
HOST_RESAMPLER = HOST_SIZES.resampler


def _block_pattern(keys) -> set[str]:
    """Key names with the block number taken out (a narrower tower has fewer blocks of the same keys)."""
    return {re.sub(r"\.resblocks\.\d+\.", ".resblocks.N.", k) for k in keys}


def _check_layout(manifest_path: Path) -> None:
    """The encoders' key names must be the released file's (only their sizes and block counts differ)."""
    manifest = json.loads(Path(manifest_path).read_text())["keys"]
    expected = _block_pattern(
        k for k in manifest if k.startswith((PART_PREFIXES["text_encoder"], PART_PREFIXES["clip_vision"]))
    )
    if expected != _block_pattern(openclip_h_key_shapes(embedder_text_leftovers=True, sizes=HOST_SIZES)):
        raise AssertionError(f"dynamicrafter.fixtures.demo's OpenCLIP keys differ from {manifest_path}")


def host_state_dict(variant: str, manifest_path: Path, with_encoders: bool = True) -> dict[str, torch.Tensor]:
    """A complete original-layout state dict whose networks run in the host on CPU in well under a second."""
    if with_encoders:
        _check_layout(manifest_path)
    return demo_state_dict(variant, with_encoders=with_encoders, embedder_text_leftovers=True, sizes=HOST_SIZES)


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
