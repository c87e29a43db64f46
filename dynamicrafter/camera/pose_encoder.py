"""CameraCtrl's camera pose encoder: Plücker rays -> one feature map per UNet level (as the CamI2V reference).

Pixel-unshuffle by the latent factor, a 3x3 input conv, then per level ``blocks`` residual conv blocks, each
followed by a temporal transformer block (self-attention over the frames with a sinusoidal frame encoding,
GEGLU feed-forward); the first block of every level but the first halves the size (2x2 average pool). Layer
names reproduce the released files' keys (``pose_encoder.encoder_down_conv_blocks.1.0.in_conv.weight``, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..attention import AttentionFn, sdpa_attention
from ..transformer import FeedForward


@dataclass(frozen=True)
class PoseEncoderConfig:
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    blocks: int = 2
    downscale: int = 8
    kernel: int = 1
    heads: int = 8
    max_frames: int = 16


def pose_encoder_config_from_state_dict(sd: Any, prefix: str = "pose_encoder.") -> PoseEncoderConfig:
    """Widths, depth, kernel and frame-encoding length from the weights (8 heads in every release)."""
    levels = sorted(
        {int(k[len(prefix) :].split(".")[1]) for k in sd if k.startswith(f"{prefix}encoder_down_conv_blocks.")}
    )
    blocks = len({k.split(".")[3] for k in sd if k.startswith(f"{prefix}encoder_down_conv_blocks.0.")})
    channels = tuple(sd[f"{prefix}encoder_down_conv_blocks.{i}.{blocks - 1}.block2.weight"].shape[0] for i in levels)
    cin = sd[f"{prefix}encoder_conv_in.weight"].shape[1]
    pe = sd[f"{prefix}encoder_down_attention_blocks.0.0.attention_blocks.0.pos_encoder.pe"]
    return PoseEncoderConfig(
        channels=channels,
        blocks=blocks,
        downscale=math.isqrt(cin // 6),
        kernel=sd[f"{prefix}encoder_down_conv_blocks.0.0.block2.weight"].shape[-1],
        max_frames=pe.shape[1],
    )


class ResnetBlock(nn.Module):
    """[pool] -> [1x1 in_conv when widths differ] -> conv3x3 -> ReLU -> conv(kernel), plus the block's input."""

    def __init__(self, cin: int, cout: int, down: bool, kernel: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.down = down
        self.in_conv = operations.Conv2d(cin, cout, kernel, 1, kernel // 2, **kw) if cin != cout else None
        self.block1 = operations.Conv2d(cout, cout, 3, 1, 1, **kw)
        self.block2 = operations.Conv2d(cout, cout, kernel, 1, kernel // 2, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return self.block2(F.relu(self.block1(x))) + x


class FrameEncoding(nn.Module):
    """Sinusoidal frame-position encoding (sin on even, cos on odd channels), added to the tokens."""

    def __init__(self, dim: int, max_frames: int):
        super().__init__()
        position = torch.arange(max_frames).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_frames, dim)
        pe[0, :, 0::2] = torch.sin(position * div)
        pe[0, :, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]].to(x)


class FrameAttention(nn.Module):
    def __init__(self, dim: int, heads: int, max_frames: int, attention: AttentionFn, dtype, device, operations):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.heads = heads
        self.attention = attention
        self.pos_encoder = FrameEncoding(dim, max_frames)
        self.to_q = operations.Linear(dim, dim, bias=False, **kw)
        self.to_k = operations.Linear(dim, dim, bias=False, **kw)
        self.to_v = operations.Linear(dim, dim, bias=False, **kw)
        self.to_out = nn.ModuleList([operations.Linear(dim, dim, **kw), nn.Identity()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_encoder(x)
        out = self.attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads)
        return self.to_out[0](out)


class FrameTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_frames: int, attention: AttentionFn, dtype, device, operations):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.attention_blocks = nn.ModuleList(
            [FrameAttention(dim, heads, max_frames, attention, dtype, device, operations)]
        )
        self.norms = nn.ModuleList([operations.LayerNorm(dim, **kw)])
        self.ff = FeedForward(dim, dtype=dtype, device=device, operations=operations)
        self.ff_norm = operations.LayerNorm(dim, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_blocks[0](self.norms[0](x)) + x
        return self.ff(self.ff_norm(x)) + x


class CameraPoseEncoder(nn.Module):
    """``forward(rays [B, 6, T, H, W]) -> [B, C_i, T, H / (8 * 2^i), W / (8 * 2^i)]`` per level i."""

    def __init__(
        self,
        config: PoseEncoderConfig,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        self.config = config
        ch = config.channels
        self.encoder_conv_in = operations.Conv2d(6 * config.downscale**2, ch[0], 3, 1, 1, dtype=dtype, device=device)
        self.encoder_down_conv_blocks = nn.ModuleList()
        self.encoder_down_attention_blocks = nn.ModuleList()
        for level, width in enumerate(ch):
            convs, attns = nn.ModuleList(), nn.ModuleList()
            for index in range(config.blocks):
                cin = (ch[level - 1] if level else ch[0]) if index == 0 else width
                convs.append(
                    ResnetBlock(cin, width, index == 0 and level > 0, config.kernel, dtype, device, operations)
                )
                attns.append(
                    FrameTransformerBlock(width, config.heads, config.max_frames, attention, dtype, device, operations)
                )
            self.encoder_down_conv_blocks.append(convs)
            self.encoder_down_attention_blocks.append(attns)

    def forward(self, rays: torch.Tensor) -> list[torch.Tensor]:
        batch = rays.shape[0]
        x = F.pixel_unshuffle(rearrange(rays, "b c f h w -> (b f) c h w"), self.config.downscale)
        x = self.encoder_conv_in(x)
        features = []
        for convs, attns in zip(self.encoder_down_conv_blocks, self.encoder_down_attention_blocks):
            for conv, attn in zip(convs, attns):
                x = conv(x)
                h, w = x.shape[-2:]
                x = rearrange(
                    attn(rearrange(x, "(b f) c h w -> (b h w) f c", b=batch)), "(b h w) f c -> (b f) c h w", h=h, w=w
                )
            features.append(rearrange(x, "(b f) c h w -> b c f h w", b=batch))
        return features
