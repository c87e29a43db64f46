"""Tiny DynamiCrafter models and conditioning for driving the host's sampler without CLIP encoders."""

from __future__ import annotations

import torch

from dynamicrafter.checkpoint import DynamiCrafterCheckpoint, checkpoint_from_state_dict
from dynamicrafter.config import UNetConfig
from support.tiny_checkpoints import TINY_UNET, tiny_resampler_state_dict, tiny_unet_state_dict

FRAMES, H, W = 16, 8, 16


def tiny_checkpoint(variant: str, unet: UNetConfig = TINY_UNET) -> DynamiCrafterCheckpoint:
    """UNet + Resampler of the tiny test structure (context 48, CLIP width 40), split as from a file."""
    sd = {f"model.diffusion_model.{k}": v for k, v in tiny_unet_state_dict(variant, unet=unet).items()}
    sd.update({f"image_proj_model.{k}": v for k, v in tiny_resampler_state_dict().items()})
    return checkpoint_from_state_dict(f"dynamicrafter_{variant}_tiny.safetensors", sd, variant)


def conditioning(seed: int = 7) -> tuple[torch.Tensor, ...]:
    """(text, uncond text, CLIP tokens, uncond CLIP tokens, image latent) stand-ins."""
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(1, 77, 48, generator=g),
        torch.randn(1, 77, 48, generator=g),
        torch.randn(1, 257, 40, generator=g),
        torch.randn(1, 257, 40, generator=g),
        torch.randn(1, 4, H, W, generator=g),
    )


def host_conds(model_module, text, uc_text, clip, uc_clip, image_latent, fs: int, task: str = "i2v"):
    """Positive/negative CONDITIONING as the pack's conditioning nodes build them."""
    concat = image_latent.repeat(FRAMES, 1, 1, 1)
    shared = {
        model_module.COND_CONCAT: concat,
        model_module.COND_FRAMES: FRAMES,
        model_module.COND_FS: fs,
        model_module.COND_TASK: task,
    }
    positive = [[text, {**shared, model_module.COND_IMAGE_TOKENS: clip}]]
    negative = [[uc_text, {**shared, model_module.COND_IMAGE_TOKENS: uc_clip}]]
    return positive, negative


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to the std of b."""
    return float((a.double() - b.double()).abs().max() / b.double().std())
