"""CamI2V's epipolar attention (as the CamI2V reference): every token of a video attends to the tokens of all
frames that lie near its epipolar lines, plus a few learned register tokens.

Each temporal block but ``init_attn``'s gets ``pluker_projection`` (Linear(c, c)) and ``epipolar``
(``epipolar.epipolar_attn``: q/k/v/out projections and ``register_tokens``). With ``n`` the normed tokens and
``f`` the pose encoder's features of the block's level, the block adds
``pluker_projection(n + f) + epipolar(n + f)`` beside its self-attention (the 256 and 512 releases'
``add_to_main_branch``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

PERTURBATION = 1e-6
"""Translations smaller than this are replaced by a random one this small (the reference's
``add_small_perturbation_on_zero_T``), so that every pair of frames has epipolar lines."""


class EpipolarAttention(nn.Module):
    def __init__(self, dim: int, heads: int, registers: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.heads = heads
        self.to_q = operations.Linear(dim, dim, bias=False, **kw)
        self.to_k = operations.Linear(dim, dim, bias=False, **kw)
        self.to_v = operations.Linear(dim, dim, bias=False, **kw)
        self.to_out = nn.Sequential(operations.Linear(dim, dim, **kw), nn.Identity())
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim, **kw))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``[B, L, C]``; ``mask`` ``[B, L, L]`` (True = may attend) or None (every token)."""
        registers = self.register_tokens.to(x).expand(x.shape[0], -1, -1)
        context = torch.cat([registers, x], dim=1)
        q, k, v = (
            rearrange(t, "b l (h d) -> b h l d", h=self.heads)
            for t in (self.to_q(x), self.to_k(context), self.to_v(context))
        )
        if mask is not None:
            mask = F.pad(mask, (registers.shape[1], 0), value=True).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(rearrange(out, "b h l d -> b l (h d)"))


class Epipolar(nn.Module):
    def __init__(self, dim: int, heads: int, registers: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.epipolar_attn = EpipolarAttention(dim, heads, registers, dtype, device, operations)

    def forward(self, tokens: torch.Tensor, height: int, width: int, mask: torch.Tensor | None) -> torch.Tensor:
        """``tokens`` ``[(b h w), t, c]`` -> the same layout, attending across all frames' pixels."""
        x = rearrange(tokens, "(b h w) t c -> b (t h w) c", h=height, w=width)
        out = self.epipolar_attn(x, mask)
        return rearrange(out, "b (t h w) c -> (b h w) t c", h=height, w=width)


def fundamental_matrices(relative_c2w: torch.Tensor, k: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``F[b, i, j]`` ``[B, T, T, 3, 3]`` for the pose pairs ``inv(c2w_j) @ c2w_i`` and intrinsics ``k`` ``[B, T, 3, 3]``."""
    pairs = torch.linalg.inv(relative_c2w)[:, None] @ relative_c2w[:, :, None]
    rotation, translation = pairs[..., :3, :3], pairs[..., :3, 3:4]
    draw = torch.randn(translation.shape, generator=generator, dtype=translation.dtype).to(translation.device)
    still = (translation.abs() < PERTURBATION).all(dim=-2, keepdim=True)
    translation = torch.where(still, draw * PERTURBATION, translation)
    essential = torch.linalg.cross(translation.expand_as(rotation), rotation, dim=-2)
    k_inv = torch.linalg.inv(k[:, None])
    return k_inv.transpose(-1, -2) @ essential @ k_inv


def epipolar_mask(fundamental: torch.Tensor, height: int, width: int, downsample: int) -> torch.Tensor:
    """``[B, T h w, T h w]``: True where a token of frame j lies within half a cell's diagonal of the epipolar line
    of a token of frame i, on an ``height`` x ``width`` grid of cells ``downsample`` pixels wide."""
    device = fundamental.device
    ys = torch.arange(height, dtype=torch.float32, device=device) * downsample + downsample / 2.0 - 0.5
    xs = torch.arange(width, dtype=torch.float32, device=device) * downsample + downsample / 2.0 - 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=2).view(-1, 3)
    lines = fundamental @ grid.T
    lines = lines / torch.norm(lines[..., :2, :], dim=-2, keepdim=True)
    distance = (lines.transpose(-1, -2) @ grid.T).abs()
    mask = distance < downsample * math.sqrt(2) / 2
    return rearrange(mask, "b i j p q -> b (i p) (j q)")


class CamI2VCamera:
    """CamI2V's hook: features of the pose encoder, and the epipolar masks of the levels that have one."""

    def __init__(self, features: list[torch.Tensor], masks: dict[int, torch.Tensor]):
        self.features = {f.shape[0] * f.shape[-2] * f.shape[-1]: f for f in features}
        self.masks = masks
        self.pending: torch.Tensor | None = None

    def self_attention_input(self, block: nn.Module, normed: torch.Tensor) -> torch.Tensor:
        projection = getattr(block, "pluker_projection", None)
        if projection is None:
            return normed
        feature = self.features[normed.shape[0]]
        height, width = feature.shape[-2:]
        x = normed + rearrange(feature, "b c f h w -> (b h w) f c").to(normed)
        self.pending = projection(x) + block.epipolar(x, height, width, self.masks.get(height))
        return normed

    def after_self_attention(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.pending is None:
            return x
        x, self.pending = x + self.pending, None
        return x
