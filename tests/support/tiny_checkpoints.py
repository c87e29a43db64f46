"""Tiny DynamiCrafter checkpoints written in the real file layouts (same key names, small shapes).

The UNet and Resampler are real (tiny configs that keep every feature); the VAE and CLIP parts use
the released key names with every wide dimension shrunk, which is all the loader looks at.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.config import VARIANTS, UNetConfig
from dynamicrafter.fixtures.demo import DEMO_RESAMPLER, DEMO_UNET, unet_state_dict
from dynamicrafter.resampler import Resampler
from dynamicrafter.schedule import make_schedule

TINY_UNET = dataclasses.replace(DEMO_UNET, context_dim=48)
"""The demo network, with text and image tokens as narrow as the shrunk CLIP parts here."""
TINY_RESAMPLER = dataclasses.replace(DEMO_RESAMPLER, embedding_dim=40, output_dim=48)
COMPACT_UNET = dataclasses.replace(TINY_UNET, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2))
"""Two levels of one block each: every kind of block in a quarter of the layers (torch.compile traces each one)."""


def random_state(module: torch.nn.Module, seed: int, scale: float = 0.1) -> dict[str, torch.Tensor]:
    """Every tensor of ``module``'s state N(0, scale^2), drawn in state-dict order from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * scale for k, v in module.state_dict().items()}


def tiny_unet_state_dict(variant: str, seed: int = 0, unet: UNetConfig = TINY_UNET) -> dict[str, torch.Tensor]:
    """UNet weights with checkpoint key names (``framestride_embed`` for 256)."""
    return unet_state_dict(variant, seed, unet, random_state)


def tiny_resampler_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    return random_state(Resampler(TINY_RESAMPLER), seed)


def _shrink(shape: list[int]) -> list[int]:
    return [d // 16 if d >= 64 and d % 16 == 0 else d for d in shape]


def shrunk_part(manifest: dict, prefix: str, seed: int = 2) -> dict[str, torch.Tensor]:
    """Random tensors for every manifest key under ``prefix``, wide dimensions divided by 16."""
    generator = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(_shrink(shape), generator=generator)
        for k, shape in manifest["keys"].items()
        if k.startswith(prefix)
    }


def full_state_dict(variant: str, manifest_path: Path) -> dict[str, torch.Tensor]:
    """Every part of an original checkpoint, in its key layout, with the schedule buffers."""
    manifest = json.loads(manifest_path.read_text())
    unet_prefix, res_prefix = PART_PREFIXES["unet"], PART_PREFIXES["resampler"]
    sd = {unet_prefix + k: v for k, v in tiny_unet_state_dict(variant).items()}
    sd.update({res_prefix + k: v for k, v in tiny_resampler_state_dict().items()})
    for part in ("vae", "text_encoder", "clip_vision"):
        sd.update(shrunk_part(manifest, PART_PREFIXES[part]))
    sd.update(make_schedule(VARIANTS[variant].schedule).buffers())
    return sd


def write_original_ckpt(path: Path, variant: str, manifest_path: Path) -> Path:
    torch.save({"state_dict": full_state_dict(variant, manifest_path), "epoch": 0}, path)
    return path


def write_bf16_safetensors(path: Path, variant: str, manifest_path: Path) -> Path:
    """Kijai's ``*_v1_bf16`` layout: the full key set, flat, bf16."""
    sd = full_state_dict(variant, manifest_path)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, str(path))
    return path


def write_fp16_pruned(path: Path, variant: str, manifest_path: Path) -> Path:
    """Kijai's ``*_fp16_pruned`` layout: UNet, VAE and Resampler only, flat, fp16."""
    sd = full_state_dict(variant, manifest_path)
    keep = tuple(PART_PREFIXES[p] for p in ("unet", "vae", "resampler"))
    save_file({k: v.half().contiguous() for k, v in sd.items() if k.startswith(keep)}, str(path))
    return path
