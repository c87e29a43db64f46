"""DynamiCrafter files for host tests: tiny UNet/Resampler/VAE with full-size random OpenCLIP-H encoders.

The host builds its text encoder and CLIP vision from their known full sizes, so those parts are
full-size (random, small-std weights, fp16); the UNet keeps every feature at a tiny width, with the real
context width (1024) and CLIP width (1280) so real encoders can drive it. The encoder weights are made
once per machine and cached under ``.cache/test-models``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dynamicrafter.checkpoint import PART_PREFIXES
from dynamicrafter.config import VARIANTS, ResamplerConfig, UNetConfig
from dynamicrafter.resampler import Resampler
from dynamicrafter.schedule import make_schedule
from dynamicrafter.unet import DynamiCrafterUNet

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "test-models"
ENCODERS_FILE = CACHE / "openclip_h_random_v1.safetensors"

HOST_UNET = UNetConfig(model_channels=32, channel_mult=(1, 1, 1, 2), num_head_channels=8, context_dim=1024)
HOST_RESAMPLER = ResamplerConfig(dim=32, depth=2, heads=2, embedding_dim=1280, output_dim=1024)
TINY_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


def _random(shape: list[int], key: str, generator: torch.Generator) -> torch.Tensor:
    leaf = key.rsplit(".", 1)[-1]
    if ("ln" in key or "norm" in key) and leaf == "weight":
        return torch.ones(shape)
    if leaf == "bias" or key.endswith("logit_scale"):
        return torch.zeros(shape)
    return torch.randn(shape, generator=generator) * 0.02


def encoder_state_dict(manifest_path: Path) -> dict[str, torch.Tensor]:
    """Full-size random ``cond_stage_model.*`` and ``embedder.*`` weights (fp16), cached on disk."""
    if ENCODERS_FILE.is_file():
        return load_file(str(ENCODERS_FILE))
    manifest = json.loads(manifest_path.read_text())
    generator = torch.Generator().manual_seed(0)
    prefixes = (PART_PREFIXES["text_encoder"], PART_PREFIXES["clip_vision"])
    sd = {k: _random(shape, k, generator).half() for k, shape in manifest["keys"].items() if k.startswith(prefixes)}
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = ENCODERS_FILE.with_suffix(".partial")
    save_file(sd, str(partial))
    partial.replace(ENCODERS_FILE)
    return sd


def _random_module_state(module: torch.nn.Module, seed: int, std: float = 0.05) -> dict[str, torch.Tensor]:
    """Random weights; norms near identity so activations stay in range through the tiny network."""
    generator = torch.Generator().manual_seed(seed)
    norms = {name for name, m in module.named_modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))}
    out = {}
    for key, value in module.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        noise = torch.randn(value.shape, generator=generator)
        out[key] = (1 + 0.1 * noise if leaf == "weight" else 0.1 * noise) if owner in norms else noise * std
    return out


def vae_state_dict(seed: int = 3) -> dict[str, torch.Tensor]:
    """A narrow SD-layout KL VAE (keys as in ``first_stage_model.``), random weights."""
    from comfy.ldm.models.autoencoder import AutoencoderKL  # host-only helper: needs ComfyUI importable

    vae = AutoencoderKL(ddconfig=TINY_VAE, embed_dim=4)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return vae.state_dict()


def host_state_dict(variant: str, manifest_path: Path, with_encoders: bool = True) -> dict[str, torch.Tensor]:
    """A complete original-layout state dict whose networks run in the host on CPU in seconds."""
    config = UNetConfig(**{**HOST_UNET.__dict__, "image_cross_attention_scale_learnable": variant == "256"})
    unet = _random_module_state(DynamiCrafterUNet(config), 1)
    if variant == "256":
        unet = {k.replace("fps_embedding.", "framestride_embed.", 1) if k.startswith("fps_embedding.") else k: v
                for k, v in unet.items()}
    sd = {PART_PREFIXES["unet"] + k: v for k, v in unet.items()}
    sd.update({PART_PREFIXES["resampler"] + k: v for k, v in _random_module_state(Resampler(HOST_RESAMPLER), 2).items()})
    sd.update({PART_PREFIXES["vae"] + k: v for k, v in vae_state_dict().items()})
    sd.update(make_schedule(VARIANTS[variant].schedule).buffers())
    if with_encoders:
        sd.update(encoder_state_dict(manifest_path))
    return sd


def write_host_checkpoint(path: Path, variant: str, manifest_path: Path, layout: str = "ckpt") -> Path:
    """``ckpt``: original Lightning dict; ``bf16``: Kijai's full bf16 file; ``pruned``: fp16 UNet+VAE+Resampler."""
    sd = host_state_dict(variant, manifest_path, with_encoders=layout != "pruned")
    if layout == "ckpt":
        torch.save({"state_dict": sd}, path)
    elif layout == "bf16":
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, str(path))
    elif layout == "pruned":
        save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return path
