"""The camera layers of the CamI2V reference's models, built into the pack's UNet, and their hooks.

* MotionCtrl: every temporal transformer block (``init_attn``'s too) gets ``cc_projection``, a
  Linear(c + 12, c) applied to ``[tokens ; 12-number pose of the frame]`` after the self-attention.

Layer names reproduce the released files' keys (``...transformer_blocks.0.cc_projection.weight``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .path import motionctrl_pose

MOTIONCTRL = "motionctrl"
METHODS = (MOTIONCTRL,)
POSE_DIM = 12


def temporal_blocks(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) of every transformer block inside a temporal transformer, in module order."""
    from ..transformer import TemporalTransformer

    return [
        (f"{name}.transformer_blocks.{index}", block)
        for name, module in unet.named_modules()
        if isinstance(module, TemporalTransformer)
        for index, block in enumerate(module.transformer_blocks)
    ]


def add_camera_layers(unet: nn.Module, method: str, dtype=None, device=None, operations: Any = nn) -> None:
    """Give ``unet`` the layers of camera ``method``."""
    if method != MOTIONCTRL:
        raise ValueError(f"unknown camera method {method!r}; known: {', '.join(METHODS)}")
    for _, block in temporal_blocks(unet):
        width = block.attn1.to_q.in_features
        block.cc_projection = operations.Linear(width + POSE_DIM, width, dtype=dtype, device=device)


class MotionCtrlCamera:
    """MotionCtrl's hook: ``pose`` ``[B, T, 12]`` concatenated to each pixel's frame tokens."""

    def __init__(self, pose: torch.Tensor):
        self.pose = pose

    def self_attention_input(self, block: nn.Module, normed: torch.Tensor) -> torch.Tensor:
        return normed

    def after_self_attention(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        projection = getattr(block, "cc_projection", None)
        if projection is None:
            return x
        pose = self.pose.to(device=x.device, dtype=x.dtype)
        pose = pose.repeat_interleave(x.shape[0] // pose.shape[0], dim=0)
        return projection(torch.cat([x, pose], dim=-1))


def camera_hook(method: str, relative_c2w: torch.Tensor, height: int, width: int) -> MotionCtrlCamera:
    """The hook of ``method`` for camera-to-world poses relative to the conditioning frame ``[B, T, 4, 4]``
    (:func:`.path.relative_c2w`) and a picture of ``height`` x ``width`` pixels."""
    if method == MOTIONCTRL:
        return MotionCtrlCamera(motionctrl_pose(relative_c2w.float()))
    raise ValueError(f"unknown camera method {method!r}; known: {', '.join(METHODS)}")


def detect_method(sd: Any) -> str | None:
    """The camera method whose layers a UNet state dict (keys without ``model.diffusion_model.``) carries."""
    projection = next((k for k in sd if k.endswith(".cc_projection.weight")), None)
    if projection is None:
        return None
    out_features, in_features = sd[projection].shape
    if in_features == out_features + POSE_DIM:
        return MOTIONCTRL
    raise ValueError(
        f"{projection} is {list(sd[projection].shape)}: a camera layer of a method this pack does not load yet "
        f"(it loads {', '.join(METHODS)})"
    )
