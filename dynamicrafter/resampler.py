"""The image-token projector (original ``lvdm/modules/encoders/resampler.py``).

A Perceiver resampler: ``num_queries * video_length`` learned queries attend to the CLIP vision
tokens of the conditioning image; the UNet later hands query block i to frame i.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import AttentionFn, sdpa_attention
from .config import ResamplerConfig


class PerceiverAttention(nn.Module):
    """Queries from the latents; keys/values from [image tokens ; latents]."""

    def __init__(
        self,
        dim: int,
        dim_head: int,
        heads: int,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.attention = attention
        self.norm1 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.norm2 = operations.LayerNorm(dim, dtype=dtype, device=device)
        self.to_q = operations.Linear(dim, inner, bias=False, dtype=dtype, device=device)
        self.to_kv = operations.Linear(dim, inner * 2, bias=False, dtype=dtype, device=device)
        self.to_out = operations.Linear(inner, dim, bias=False, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, latents: torch.Tensor, transformer_options: dict | None = None) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        return self.to_out(
            self.attention(q, k.contiguous(), v.contiguous(), self.heads, transformer_options=transformer_options)
        )


class Resampler(nn.Module):
    """``[B, 257, embedding_dim]`` CLIP tokens -> ``[B, num_queries * video_length, output_dim]``."""

    def __init__(
        self,
        config: ResamplerConfig,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        self.config = config
        queries = config.num_queries * config.video_length
        self.latents = nn.Parameter(torch.empty(1, queries, config.dim, dtype=dtype, device=device))
        kw = dict(dtype=dtype, device=device)
        self.proj_in = operations.Linear(config.embedding_dim, config.dim, **kw)
        self.proj_out = operations.Linear(config.dim, config.output_dim, **kw)
        self.norm_out = operations.LayerNorm(config.output_dim, **kw)
        inner_ff = config.dim * config.ff_mult
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(
                        config.dim, config.dim_head, config.heads, attention, operations=operations, **kw
                    ),
                    nn.Sequential(
                        operations.LayerNorm(config.dim, **kw),
                        operations.Linear(config.dim, inner_ff, bias=False, **kw),
                        nn.GELU(),
                        operations.Linear(inner_ff, config.dim, bias=False, **kw),
                    ),
                ]
            )
            for _ in range(config.depth)
        )

    def forward(self, x: torch.Tensor, transformer_options: dict | None = None) -> torch.Tensor:
        """``transformer_options``: the host's, for its attention-backend override."""
        x = self.proj_in(x)
        latents = self.latents.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents, transformer_options) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))
