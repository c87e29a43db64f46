"""The attention function the networks call, and helpers shared by their layers.

Networks take an ``attention`` callable with the host's calling convention
``attention(q, k, v, heads, transformer_options=None) -> out`` where q/k/v/out are
``[batch, tokens, heads * dim_head]`` and the softmax scale is ``dim_head ** -0.5``. ComfyUI passes its
``optimized_attention`` (xformers, SDPA or sage as installed), which reads attention-backend overrides
from ``transformer_options``; without a host, :func:`sdpa_attention` is used and ignores them.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class AttentionFn(Protocol):
    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, transformer_options: dict | None = None
    ) -> torch.Tensor: ...


def sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, transformer_options: dict | None = None
) -> torch.Tensor:
    """Multi-head attention through ``torch.nn.functional.scaled_dot_product_attention``."""
    batch, _, inner = q.shape
    dim_head = inner // heads
    q, k, v = (t.view(batch, -1, heads, dim_head).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(batch, -1, inner)
