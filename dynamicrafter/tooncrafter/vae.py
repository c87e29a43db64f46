"""ToonCrafter's dual-reference video VAE (original ``lvdm/models/autoencoder_dualref.py``), inference only.

ToonCrafter keeps DynamiCrafter's KL-f8 encoder and replaces the decoder with a video decoder:

* every decoder ResnetBlock gets a temporal residual branch (``time_stack``: two GroupNorm-SiLU-Conv3d
  (3,1,1) stages whose norms pool over the frames), blended with the spatial result by
  ``sigmoid(mix_factor)``;
* ``conv_out`` is followed by a temporal Conv3d (``conv_out.time_mix_conv``);
* after every level, and once more before ``conv_out``, the encoder features of the first and last
  input frames (the *reference context*) are injected: on the deep levels by cross-attention from every
  decoded frame to both reference frames (``attn_refinement.N`` with ``to_q``/``to_k``/``to_v``), elsewhere
  by 1x1 convs whose output is added to the first and last decoded frames of the chunk.

The decoder sees frames folded into the batch (``[(b t), c, h, w]``, frame index fastest); the temporal
layers and reference injections work on each video of a chunk (how a whole video is decoded, in chunks
and with the original's second pass, is :mod:`.tooncrafter_decode`). The original never applies
``post_quant_conv`` on this path (its ``decode`` skips it whenever the decoder gets reference context);
the layer exists only so that the checkpoint part loads strictly.

All weight-bearing layers come from the injected ``operations`` namespace and both attentions go through
the injected ``attention`` function. Module names reproduce the checkpoint's ``first_stage_model.`` keys.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..attention import AttentionFn, sdpa_attention
from ..frames import fold_frames, unfold_frames
from .config import ToonCrafterVAEConfig

ReferenceContext = list[torch.Tensor]
"""Encoder features of the first and last frames: one ``[b, 2, c, h, w]`` tensor per decoder level
(level 0 = full resolution), then the encoder's ``conv_in`` output for the last injection."""


def _group_norm(channels: int, eps: float, dtype, device, operations: Any) -> nn.Module:
    return operations.GroupNorm(32, channels, eps=eps, dtype=dtype, device=device)


class ResnetBlock(nn.Module):
    """The SD VAE block: GN-SiLU-Conv3x3 twice, plus the input (through a 1x1 conv when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.norm1 = _group_norm(in_channels, 1e-6, dtype, device, operations)
        self.conv1 = operations.Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype, device=device)
        self.norm2 = _group_norm(out_channels, 1e-6, dtype, device, operations)
        self.conv2 = operations.Conv2d(out_channels, out_channels, 3, padding=1, dtype=dtype, device=device)
        self.nin_shortcut = (
            None
            if in_channels == out_channels
            else operations.Conv2d(in_channels, out_channels, 1, dtype=dtype, device=device)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class TemporalResidual(nn.Module):
    """``x + Conv3d(GN-SiLU(Conv3d(GN-SiLU(x))))`` over ``[b, c, t, h, w]``; the norms (eps 1e-5) pool over t."""

    def __init__(self, channels: int, kernel: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()

        def conv() -> nn.Module:
            return operations.Conv3d(
                channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0), dtype=dtype, device=device
            )

        self.in_layers = nn.Sequential(_group_norm(channels, 1e-5, dtype, device, operations), nn.SiLU(), conv())
        self.out_layers = nn.Sequential(
            _group_norm(channels, 1e-5, dtype, device, operations), nn.SiLU(), nn.Identity(), conv()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[2](F.silu(self.in_layers[0](x)))
        return x + self.out_layers[3](F.silu(self.out_layers[0](h)))


class VideoResnetBlock(ResnetBlock):
    """A ResnetBlock whose output is blended with a temporal residual branch by ``sigmoid(mix_factor)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dtype=None, device=None, operations: Any = nn):
        super().__init__(in_channels, out_channels, dtype, device, operations)
        self.time_stack = TemporalResidual(out_channels, kernel, dtype, device, operations)
        self.mix_factor = nn.Parameter(torch.zeros(1, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        spatial = unfold_frames(super().forward(x), frames)
        alpha = torch.sigmoid(self.mix_factor.to(device=x.device, dtype=torch.float32)).to(x.dtype)
        mixed = alpha * self.time_stack(spatial) + (1 - alpha) * spatial
        return fold_frames(mixed)


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (1x1 conv projections)."""

    def __init__(self, channels: int, attention: AttentionFn, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.attention = attention
        self.norm = _group_norm(channels, 1e-6, dtype, device, operations)
        self.q, self.k, self.v, self.proj_out = (
            operations.Conv2d(channels, channels, 1, dtype=dtype, device=device) for _ in range(4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        height, width = x.shape[2:]
        q, k, v = (rearrange(conv(h), "b c h w -> b (h w) c") for conv in (self.q, self.k, self.v))
        out = rearrange(self.attention(q, k, v, 1), "b (h w) c -> b c h w", h=height, w=width)
        return x + self.proj_out(out)


class ReferenceAttention(nn.Module):
    """Cross-attention from every pixel of every frame to the pixels of both reference frames.

    Queries come from the group-normalised frame, keys and values from the raw reference features
    (first frame's pixels, then last frame's). All frames of a video share the keys, so their queries
    are attended as one sequence.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        attention: AttentionFn,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.attention = attention
        self.norm = _group_norm(channels, 1e-6, dtype, device, operations)
        self.to_q = operations.Linear(channels, inner, bias=False, dtype=dtype, device=device)
        self.to_k = operations.Linear(channels, inner, bias=False, dtype=dtype, device=device)
        self.to_v = operations.Linear(channels, inner, bias=False, dtype=dtype, device=device)
        self.to_out = nn.Sequential(operations.Linear(inner, channels, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        videos, height, width = context.shape[0], x.shape[2], x.shape[3]
        q = self.to_q(rearrange(self.norm(x), "(b t) c h w -> b (t h w) c", b=videos))
        refs = rearrange(context, "b r c h w -> b (r h w) c")
        out = self.to_out(self.attention(q, self.to_k(refs), self.to_v(refs), self.heads))
        return x + rearrange(out, "b (t h w) c -> (b t) c h w", h=height, w=width)


class ReferenceCombiner(nn.Module):
    """Adds a 1x1 conv of the first (last) reference frame to the first (last) frame of each video."""

    def __init__(self, channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        videos = context.shape[0]
        injected = self.conv(context.flatten(0, 1)).unflatten(0, (videos, 2))
        # In place, as the original: ``x`` is the decoder's own activation and a full-resolution copy
        # of a 16-frame chunk would cost as much memory as the activation itself.
        frames = x.unflatten(0, (videos, x.shape[0] // videos))
        frames[:, 0] += injected[:, 0]
        frames[:, -1] += injected[:, 1]  # a one-frame chunk gets both, as in the original
        return x


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero padding one pixel on the right and bottom."""

    def __init__(self, channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, stride=2, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution of the encoder (``block``, ``downsample``) or decoder (``block``, ``upsample``)."""

    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None, resample_name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.resample_name = resample_name
        setattr(self, resample_name, resample)  # None adds no keys (the lowest/highest level has none)

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        layer = getattr(self, self.resample_name)
        return x if layer is None else layer(x)


class Encoder(nn.Module):
    """The SD KL-f8 encoder (``encoder.*``), which can also hand out its per-level features."""

    def __init__(
        self,
        config: ToonCrafterVAEConfig,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        ch = config.channels
        self.conv_in = operations.Conv2d(config.image_channels, ch, 3, padding=1, dtype=dtype, device=device)
        self.down = nn.ModuleList()
        block_in = ch
        last = len(config.channel_mult) - 1
        for level in range(last + 1):
            block_out = config.level_channels(level)
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, **kw))
                block_in = block_out
            self.down.append(_Level(blocks, Downsample(block_in, **kw) if level != last else None, "downsample"))
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, **kw)
        self.mid.attn_1 = AttnBlock(block_in, attention, **kw)
        self.mid.block_2 = ResnetBlock(block_in, block_in, **kw)
        self.norm_out = _group_norm(block_in, 1e-6, dtype, device, operations)
        self.conv_out = operations.Conv2d(block_in, 2 * config.z_channels, 3, padding=1, dtype=dtype, device=device)

    def _down(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        first = h = self.conv_in(x)
        features = []
        for level in self.down:
            for block in level.block:
                h = block(h)
            features.append(h)
            h = level.resample(h)
        features.append(first)
        return h, features

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each level's last block (before downsampling), then the ``conv_in`` output."""
        return self._down(x)[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Posterior moments before ``quant_conv`` (``2 z`` channels) and :meth:`features`."""
        h, features = self._down(x)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h))), features


class DualReferenceDecoder(nn.Module):
    """The video decoder (``decoder.*``): VAE latents of consecutive frames + reference context -> pixels."""

    def __init__(
        self,
        config: ToonCrafterVAEConfig,
        attention: AttentionFn = sdpa_attention,
        dtype=None,
        device=None,
        operations: Any = nn,
    ):
        super().__init__()
        kw = dict(dtype=dtype, device=device, operations=operations)
        kernel = config.temporal_kernel
        block_in = config.level_channels(len(config.channel_mult) - 1)
        self.conv_in = operations.Conv2d(config.z_channels, block_in, 3, padding=1, dtype=dtype, device=device)
        self.mid = nn.Module()
        self.mid.block_1 = VideoResnetBlock(block_in, block_in, kernel, **kw)
        self.mid.attn_1 = AttnBlock(block_in, attention, **kw)
        self.mid.block_2 = VideoResnetBlock(block_in, block_in, kernel, **kw)
        levels: list[nn.Module] = []
        refinements: list[nn.Module] = []
        for level in reversed(range(len(config.channel_mult))):
            block_out = config.level_channels(level)
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(VideoResnetBlock(block_in, block_out, kernel, **kw))
                block_in = block_out
            levels.insert(0, _Level(blocks, Upsample(block_in, **kw) if level else None, "upsample"))
            refinements.insert(
                0,
                ReferenceAttention(block_in, config.fusion_heads, config.fusion_head_dim, attention, **kw)
                if level in config.fusion_levels
                else ReferenceCombiner(block_in, **kw),
            )
        refinements.append(ReferenceCombiner(block_in, **kw))
        self.up = nn.ModuleList(levels)
        self.attn_refinement = nn.ModuleList(refinements)
        self.norm_out = _group_norm(block_in, 1e-6, dtype, device, operations)
        # The checkpoint nests the temporal conv inside conv_out (``conv_out.time_mix_conv.*``).
        self.conv_out = operations.Conv2d(block_in, config.image_channels, 3, padding=1, dtype=dtype, device=device)
        self.conv_out.time_mix_conv = operations.Conv3d(
            config.image_channels,
            config.image_channels,
            (kernel, 1, 1),
            padding=(kernel // 2, 0, 0),
            dtype=dtype,
            device=device,
        )

    def forward(self, z: torch.Tensor, context: ReferenceContext) -> torch.Tensor:
        """``z``: ``[b*t, z, h, w]`` VAE latents (not scaled), t frames of each of the b videos in ``context``."""
        frames = z.shape[0] // context[0].shape[0]
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, frames)), frames)
        for index in reversed(range(len(self.up))):
            level = self.up[index]
            for block in level.block:
                h = block(h, frames)
            h = level.resample(self.attn_refinement[index](h, context[index]))
        h = self.attn_refinement[-1](F.silu(self.norm_out(h)), context[-1])
        return fold_frames(self.conv_out.time_mix_conv(unfold_frames(self.conv_out(h), frames)))


class ToonCrafterVAE(nn.Module):
    """The checkpoint's ``first_stage_model``: encoder, dual-reference decoder and the two 1x1 quant convs."""

    def __init__(
        self,
        config: ToonCrafterVAEConfig,
        attention: AttentionFn = sdpa_attention,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        operations: Any = nn,
    ):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, attention, dtype, device, operations)
        self.decoder = DualReferenceDecoder(config, attention, dtype, device, operations)
        self.quant_conv = operations.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1, dtype=dtype, device=device)
        self.post_quant_conv = operations.Conv2d(config.embed_dim, config.z_channels, 1, dtype=dtype, device=device)

    def reference_context(self, first: torch.Tensor, last: torch.Tensor) -> ReferenceContext:
        """Encoder features of the first and last frames, ``[b, 3, H, W]`` each in [-1, 1]."""
        features = self.encoder.features(torch.cat([first, last]))
        return [f.unflatten(0, (2, first.shape[0])).transpose(0, 1) for f in features]

    def decode(self, z: torch.Tensor, context: ReferenceContext) -> torch.Tensor:
        """Pixels in about [-1, 1] of ``[b*t, z, h, w]`` VAE latents (the sampler's latents / 0.18215)."""
        return self.decoder(z, context)
