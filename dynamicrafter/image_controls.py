"""Conditioning-image controls: noise augmentation of the picture, and per-frame blending of the start and end
pictures' image tokens (Kijai's wrapper's ``augmentation_level`` and ``image_embed_ratio``, per frame here)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from einops import rearrange

from .config import IMAGE_TOKENS_PER_FRAME

TokenSchedule = Literal["constant", "ramp"]
TOKEN_SCHEDULES: tuple[str, ...] = get_args(TokenSchedule)
AUGMENTATION_SEED = 0
"""The augmentation noise is drawn from a generator with this seed: the same picture gives the same video."""


def augment(pixels: torch.Tensor, level: float, seed: int = AUGMENTATION_SEED) -> torch.Tensor:
    """``pixels + level * N(0, 1)`` on 0..1 pixels (not clamped, as the wrapper does), seen by the VAE and CLIP."""
    if level == 0:
        return pixels
    noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return pixels + level * noise.to(pixels)


def end_token_weights(frames: int, share: float, schedule: TokenSchedule) -> torch.Tensor:
    """Share of the end picture's tokens each frame sees ``[T]``: ``share`` everywhere, or rising 0 -> share."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the end picture's token share must be between 0 and 1, got {share}")
    if schedule == "constant":
        return torch.full((frames,), float(share))
    if schedule == "ramp":
        return share * torch.linspace(0.0, 1.0, frames)
    raise ValueError(f"unknown token schedule {schedule!r}; use 'constant' or 'ramp'")


def blend_frame_tokens(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Resampler outputs ``[B, T*16, D]`` of both pictures, mixed per frame: ``(1 - w_t) start + w_t end``.

    With one weight for all frames this is the wrapper's ``img_emb * ratio + img_emb2 * (1 - ratio)``, w = 1 - ratio.
    """
    frames = weights.shape[-1]
    if start.shape[1] != frames * IMAGE_TOKENS_PER_FRAME:
        raise ValueError(
            f"{start.shape[1]} image tokens are not {IMAGE_TOKENS_PER_FRAME} for each of {frames} "
            "frames; per-frame token blending needs the model's 16-frame Resampler"
        )
    w = weights.to(start).view(-1, frames, 1, 1)
    per_frame = lambda x: rearrange(x, "b (t n) d -> b t n d", t=frames)  # noqa: E731
    return rearrange((1.0 - w) * per_frame(start) + w * per_frame(end), "b t n d -> b (t n) d")
