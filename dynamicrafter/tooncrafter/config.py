"""The shape of ToonCrafter's dual-reference VAE: its constructor arguments and how a file's tensors show them.

Kept apart from the network (:mod:`.tooncrafter_vae`) so that the loaders can tell a ToonCrafter VAE from the
plain SD one, and size it, without building anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ToonCrafterVAEConfig:
    """Constructor arguments of the dual-reference VAE (the released values are the defaults)."""

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    image_channels: int = 3
    fusion_levels: tuple[int, ...] = (2, 3)
    fusion_heads: int = 8
    fusion_head_dim: int = 64
    temporal_kernel: int = 3

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along each side (8 for the released VAE)."""
        return 2 ** (len(self.channel_mult) - 1)

    def level_channels(self, level: int) -> int:
        return self.channels * self.channel_mult[level]


def is_dual_reference_vae(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether a ``first_stage_model.`` part (prefix stripped) is ToonCrafter's, not the plain SD VAE."""
    return any(k.startswith("decoder.attn_refinement.") for k in sd)


def vae_config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> ToonCrafterVAEConfig:
    """Read widths, levels, blocks and the fusion layers of a dual-reference VAE from its shapes."""
    channels, image_channels = sd["encoder.conv_in.weight"].shape[:2]
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"decoder\.up\.(\d+)\.", k))})
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"decoder\.up\.0\.block\.(\d+)\.", k))}
    channel_mult = tuple(sd[f"decoder.up.{i}.block.0.conv1.weight"].shape[0] // channels for i in levels)
    fusion_levels = tuple(i for i in levels if f"decoder.attn_refinement.{i}.to_q.weight" in sd)
    heads = ToonCrafterVAEConfig.fusion_heads
    head_dim = (
        sd[f"decoder.attn_refinement.{fusion_levels[0]}.to_q.weight"].shape[0] // heads
        if fusion_levels
        else ToonCrafterVAEConfig.fusion_head_dim
    )
    return ToonCrafterVAEConfig(
        channels=channels,
        channel_mult=channel_mult,
        num_res_blocks=len(blocks) - 1,
        z_channels=sd["decoder.conv_in.weight"].shape[1],
        embed_dim=sd["post_quant_conv.weight"].shape[1],
        image_channels=image_channels,
        fusion_levels=fusion_levels,
        fusion_heads=heads,
        fusion_head_dim=head_dim,
        temporal_kernel=sd["decoder.mid.block_1.time_stack.in_layers.2.weight"].shape[2],
    )
