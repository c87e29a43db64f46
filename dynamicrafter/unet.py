"""The DynamiCrafter video UNet (original ``lvdm/modules/networks/openaimodel3d.py``), inference only.

Frames are folded into the batch (``[(b t), c, h, w]``, frame index fastest) for every 2-D layer and
unfolded for the temporal ones. All weight-bearing layers come from the injected ``operations``
namespace and every attention goes through the injected ``attention`` function, so a host can manage
devices and dtypes. Module names reproduce the original checkpoint keys, including the misspelled
``temopral_conv``. The host's ``transformer_options`` and ControlNet residuals (``control``) reach the
same points as in the host's own image UNets (input blocks, middle block, output blocks; see
:mod:`.patches`): DynamiCrafter has SD 2.1's block layout and channels.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import freenoise
from .attention import AttentionFn, sdpa_attention
from .camera.layers import add_camera_layers
from .config import IMAGE_TOKENS_PER_FRAME, UNetConfig
from .frames import fold_frames, unfold_frames
from .patches import Options, apply_control, patches
from .transformer import FrameContext, SpatialTransformer, TemporalTransformer, split_context


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t f), sin(t f)]`` (cos first), computed in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TemporalConvBlock(nn.Module):
    """Four GroupNorm-SiLU-Conv3d(3,1,1) stages over time with a residual; norms pool over frames."""

    def __init__(self, channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()

        def stage(with_dropout_slot: bool) -> nn.Sequential:
            layers = [operations.GroupNorm(32, channels, dtype=dtype, device=device), nn.SiLU()]
            if with_dropout_slot:
                layers.append(nn.Identity())
            layers.append(
                operations.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0), dtype=dtype, device=device)
            )
            return nn.Sequential(*layers)

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """GN-SiLU-Conv, + embedding, GN-SiLU-Conv, skip; then a temporal conv block."""

    def __init__(
        self, channels: int, emb_channels: int, out_channels: int, dtype=None, device=None, operations: Any = nn
    ):
        super().__init__()
        self.in_layers = nn.Sequential(
            operations.GroupNorm(32, channels, dtype=dtype, device=device),
            nn.SiLU(),
            operations.Conv2d(channels, out_channels, 3, padding=1, dtype=dtype, device=device),
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), operations.Linear(emb_channels, out_channels, dtype=dtype, device=device)
        )
        self.out_layers = nn.Sequential(
            operations.GroupNorm(32, out_channels, dtype=dtype, device=device),
            nn.SiLU(),
            nn.Identity(),
            operations.Conv2d(out_channels, out_channels, 3, padding=1, dtype=dtype, device=device),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = operations.Conv2d(channels, out_channels, 1, dtype=dtype, device=device)
        self.temopral_conv = TemporalConvBlock(out_channels, dtype, device, operations)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb)[..., None, None]
        h = self.out_layers(h)
        h = self.skip_connection(x) + h
        return fold_frames(self.temopral_conv(unfold_frames(h, frames)))


class Downsample(nn.Module):
    def __init__(self, channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.op = operations.Conv2d(channels, channels, 3, stride=2, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, dtype=None, device=None, operations: Any = nn):
        super().__init__()
        self.conv = operations.Conv2d(channels, channels, 3, padding=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """Runs its layers in order, giving each the inputs it needs."""

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, context: FrameContext, frames: int, options: Options
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, frames)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, options)
                if "transformer_index" in options:
                    options["transformer_index"] += 1
            elif isinstance(layer, TemporalTransformer):
                x = layer(x, frames, options)
            else:
                x = layer(x)
        return x


class DynamiCrafterUNet(nn.Module):
    """The 3-D UNet: ``forward(x [B, 8, T, h, w], timesteps [B], context, fs) -> [B, 4, T, h, w]``."""

    def __init__(
        self,
        config: UNetConfig,
        attention: AttentionFn = sdpa_attention,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        operations: Any = nn,
    ):
        super().__init__()
        self.config = config
        self.dtype = dtype
        mc, emb_dim = config.model_channels, config.time_embed_dim
        kw = dict(dtype=dtype, device=device, operations=operations)
        heads_of = lambda ch: ch // config.num_head_channels  # noqa: E731

        def transformers(ch: int) -> list[nn.Module]:
            return [
                SpatialTransformer(
                    ch,
                    heads_of(ch),
                    config.num_head_channels,
                    config.context_dim,
                    config.image_cross_attention_scale_learnable,
                    attention,
                    **kw,
                ),
                TemporalTransformer(ch, heads_of(ch), config.num_head_channels, attention=attention, **kw),
            ]

        def mlp() -> nn.Sequential:
            return nn.Sequential(
                operations.Linear(mc, emb_dim, dtype=dtype, device=device),
                nn.SiLU(),
                operations.Linear(emb_dim, emb_dim, dtype=dtype, device=device),
            )

        self.time_embed = mlp()
        self.fps_embedding = mlp()

        self.input_blocks = nn.ModuleList(
            [
                TimestepEmbedSequential(
                    operations.Conv2d(config.in_channels, mc, 3, padding=1, dtype=dtype, device=device)
                )
            ]
        )
        self.init_attn = TimestepEmbedSequential(
            TemporalTransformer(
                mc, config.init_attn_heads, config.num_head_channels, use_linear=False, attention=attention, **kw
            )
        )

        skip_channels = [mc]
        ch, ds = mc, 1
        levels = len(config.channel_mult)
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, **kw)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers += transformers(ch)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, **kw)))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, ch, **kw), *transformers(ch), ResBlock(ch, emb_dim, ch, **kw)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mc * mult, **kw)]
                ch = mc * mult
                if ds in config.attention_resolutions:
                    layers += transformers(ch)
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch, **kw))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            operations.GroupNorm(32, ch, dtype=dtype, device=device),
            nn.SiLU(),
            operations.Conv2d(mc, config.out_channels, 3, padding=1, dtype=dtype, device=device),
        )
        if config.camera is not None:
            add_camera_layers(self, config.camera, **kw)

    def embed(self, timesteps: torch.Tensor, fs: torch.Tensor | None, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """Time embedding plus fs embedding, one row per video."""
        device = timesteps.device
        if fs is None:
            fs = torch.full((batch,), self.config.default_fs, dtype=torch.long, device=device)
        fs = fs.reshape(-1).to(device).expand(batch) if fs.numel() == 1 else fs.to(device)
        mc = self.config.model_channels
        emb = self.time_embed(timestep_embedding(timesteps, mc).to(dtype))
        return emb + self.fps_embedding(timestep_embedding(fs, mc).to(dtype))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        fs: torch.Tensor | None = None,
        image_context: torch.Tensor | None = None,
        transformer_options: Options | None = None,
        control: dict[str, list] | None = None,
    ) -> torch.Tensor:
        """Predict noise (or v) for a batch of videos.

        ``context`` is either the original's [77 text ; image tokens] sequence, or text tokens of any
        length when ``image_context`` carries the image tokens separately. ``fs`` defaults to the
        config's ``default_fs``. ``transformer_options`` and ``control`` follow the host's conventions;
        ``original_shape`` is set to the frames-as-batch shape ``[(b t), c, h, w]`` the layers see.
        A :class:`.freenoise.FreeNoise` under ``transformer_options[freenoise.OPTION]`` runs the temporal
        attention and the image tokens in fused windows of frames (nothing changes when one window holds them all).
        """
        options = {} if transformer_options is None else transformer_options
        batch, channels, frames, height, width = x.shape
        options["original_shape"] = [batch * frames, channels, height, width]
        options["transformer_index"] = 0
        timesteps = timesteps.reshape(-1).expand(batch) if timesteps.numel() == 1 else timesteps
        emb = self.embed(timesteps, fs, batch, x.dtype).repeat_interleave(frames, dim=0)
        for patch in patches(options, "emb_patch"):
            emb = patch(emb, self.config.model_channels, options)
        settings: freenoise.FreeNoise | None = options.get(freenoise.OPTION)
        windows = None if settings is None else settings.spans(frames)
        if windows is None:
            options.pop(freenoise.WINDOWS, None)
        else:
            options[freenoise.WINDOWS] = windows
        frame_context = split_context(
            context, frames, image_context, IMAGE_TOKENS_PER_FRAME, None if windows is None else settings.window
        )

        h = fold_frames(x)
        skips = []
        for index, block in enumerate(self.input_blocks):
            options["block"] = ("input", index)
            h = block(h, emb, frame_context, frames, options)
            if index == 0:
                h = self.init_attn(h, emb, frame_context, frames, options)
            h = apply_control(h, control, "input")
            for patch in patches(options, "input_block_patch"):
                h = patch(h, options)
            skips.append(h)
            for patch in patches(options, "input_block_patch_after_skip"):
                h = patch(h, options)
        options["block"] = ("middle", 0)
        h = self.middle_block(h, emb, frame_context, frames, options)
        h = apply_control(h, control, "middle")
        for index, block in enumerate(self.output_blocks):
            options["block"] = ("output", index)
            skip = apply_control(skips.pop(), control, "output")
            for patch in patches(options, "output_block_patch"):
                h, skip = patch(h, skip, options)
            h = block(torch.cat([h, skip], dim=1), emb, frame_context, frames, options)
        h = self.out(h)
        return unfold_frames(h, frames)
