"""Derive network configs from state-dict shapes, the way ComfyUI's ``model_detection`` does.

Works on real tensors and on meta tensors alike, so the full-size rules are testable without weights.
Keys here are relative to the part (no ``model.diffusion_model.`` / ``image_proj_model.`` prefix).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .camera.layers import detect_method
from .config import ResamplerConfig, UNetConfig

StateDict = Mapping[str, torch.Tensor]


def unet_config_from_state_dict(sd: StateDict, default_fs: int = 24) -> UNetConfig:
    """Read channels, depth, levels, heads and context width of the UNet from its weights."""
    model_channels, in_channels = sd["input_blocks.0.0.weight"].shape[:2]
    init_heads = 8  # init_attn is always built with 8 heads; its width gives the head size
    num_head_channels = sd["init_attn.0.proj_in.weight"].shape[0] // init_heads
    context_dim = sd["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]

    block_ids = sorted({int(m.group(1)) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.", k))})
    channel_mult: list[int] = []
    attention_resolutions: list[int] = []
    res_blocks_in_level = 0
    num_res_blocks = None
    ds = 1
    for index in block_ids[1:]:
        if f"input_blocks.{index}.0.op.weight" in sd:
            num_res_blocks = res_blocks_in_level
            res_blocks_in_level = 0
            ds *= 2
            continue
        if res_blocks_in_level == 0:
            channel_mult.append(sd[f"input_blocks.{index}.0.in_layers.2.weight"].shape[0] // model_channels)
        res_blocks_in_level += 1
        if f"input_blocks.{index}.1.norm.weight" in sd and ds not in attention_resolutions:
            attention_resolutions.append(ds)
    learnable = any(k.endswith("attn2.alpha") for k in sd)
    return UNetConfig(
        in_channels=in_channels,
        out_channels=sd["out.2.weight"].shape[0],
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=num_res_blocks or res_blocks_in_level,
        attention_resolutions=tuple(sorted(attention_resolutions, reverse=True)),
        num_head_channels=num_head_channels,
        context_dim=context_dim,
        image_cross_attention_scale_learnable=learnable,
        default_fs=default_fs,
        init_attn_heads=init_heads,
        camera=detect_method(sd),
    )


def resampler_config_from_state_dict(sd: StateDict, video_length: int = 16, dim_head: int = 64) -> ResamplerConfig:
    """Read the Resampler's widths and depth; dim_head is 64 in every released file."""
    queries, dim = sd["latents"].shape[1:]
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    return ResamplerConfig(
        dim=dim,
        depth=depth,
        dim_head=dim_head,
        heads=sd["layers.0.0.to_q.weight"].shape[0] // dim_head,
        num_queries=queries // video_length,
        embedding_dim=sd["proj_in.weight"].shape[1],
        output_dim=sd["proj_out.weight"].shape[0],
        ff_mult=sd["layers.0.1.1.weight"].shape[0] // dim,
        video_length=video_length,
    )
