"""The camera layers of the CamI2V reference's models, built into the pack's UNet, and their hooks.

* MotionCtrl: every temporal transformer block (``init_attn``'s too) gets ``cc_projection``, a
  Linear(c + 12, c) applied to ``[tokens ; 12-number pose of the frame]`` after the self-attention.
* CameraCtrl: a camera pose encoder (:mod:`.pose_encoder`) turns the Plücker rays into one feature map per
  level; every temporal transformer block but ``init_attn``'s gets ``cc_projection``, a Linear(c, c), and its
  self-attention reads ``n + cc_projection(n + features)`` (``n``: the normed tokens).
* CamI2V: CameraCtrl's encoder, and epipolar attention beside the self-attention (:mod:`.epipolar`).

Layer names reproduce the released files' keys (``...transformer_blocks.0.cc_projection.weight``).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from .epipolar import CamI2VCamera, Epipolar, epipolar_mask, fundamental_matrices
from .path import intrinsics, motionctrl_pose, plucker
from .pose_encoder import CameraPoseEncoder, PoseEncoderConfig, pose_encoder_config_from_state_dict

MOTIONCTRL = "motionctrl"
CAMERACTRL = "cameractrl"
CAMI2V = "cami2v"
METHODS = (MOTIONCTRL, CAMERACTRL, CAMI2V)
REGISTER_TOKENS = 4
"""CamI2V's learned register tokens per epipolar attention (every release)."""
EPIPOLAR_LEVELS = {"256": (8, 4, 2, 1), "512": (8, 4, 2)}
"""The UNet levels (downsampling factor of the latent) whose epipolar attention is masked, by release; the
others attend to every token (the reference's ``epipolar_config.attention_resolution``)."""
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
    if method not in METHODS:
        raise ValueError(f"unknown camera method {method!r}; known: {', '.join(METHODS)}")
    for name, block in temporal_blocks(unet):
        width = block.attn1.to_q.in_features
        if method == MOTIONCTRL:
            block.cc_projection = operations.Linear(width + POSE_DIM, width, dtype=dtype, device=device)
        elif name.startswith("init_attn."):
            continue
        elif method == CAMERACTRL:
            block.cc_projection = operations.Linear(width, width, dtype=dtype, device=device)
        else:
            block.pluker_projection = operations.Linear(width, width, dtype=dtype, device=device)
            block.epipolar = Epipolar(width, block.attn1.heads, REGISTER_TOKENS, dtype, device, operations)
    if method in (CAMERACTRL, CAMI2V):
        unet.pose_encoder = CameraPoseEncoder(
            pose_encoder_config(unet.config), unet_attention(unet), dtype=dtype, device=device, operations=operations
        )


def pose_encoder_config(config: Any) -> PoseEncoderConfig:
    """The released encoders' structure: one level per UNet level, of its width; 16 frames."""
    return PoseEncoderConfig(
        channels=tuple(config.model_channels * m for m in config.channel_mult), max_frames=config.temporal_length
    )


def unet_attention(unet: nn.Module):
    """The attention function the UNet's layers were built with."""
    return unet.init_attn[0].transformer_blocks[0].attn1.attention


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


class CameraCtrlCamera:
    """CameraCtrl's hook: the pose encoder's features ``[B, C, T, h, w]``, found by the tokens' pixel count."""

    def __init__(self, features: list[torch.Tensor]):
        self.features = {f.shape[0] * f.shape[-2] * f.shape[-1]: f for f in features}

    def self_attention_input(self, block: nn.Module, normed: torch.Tensor) -> torch.Tensor:
        projection = getattr(block, "cc_projection", None)
        if projection is None:
            return normed
        features = rearrange(self.features[normed.shape[0]], "b c f h w -> (b h w) f c").to(normed)
        return normed + projection(normed + features)

    def after_self_attention(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x


def camera_hook(
    unet: nn.Module,
    relative_c2w: torch.Tensor,
    height: int,
    width: int,
    dtype: torch.dtype | None = None,
    epipolar_levels: tuple[int, ...] = EPIPOLAR_LEVELS["256"],
    seed: int = 0,
) -> MotionCtrlCamera | CameraCtrlCamera | CamI2VCamera:
    """The hook of ``unet``'s camera method for camera-to-world poses relative to the conditioning frame
    ``[B, T, 4, 4]`` (:func:`.path.relative_c2w`) and a picture of ``height`` x ``width`` pixels. CamI2V masks the
    epipolar attention of ``epipolar_levels``; ``seed`` draws its stand-in for zero translations."""
    method = unet.config.camera
    relative_c2w = relative_c2w.float()
    if method == MOTIONCTRL:
        return MotionCtrlCamera(motionctrl_pose(relative_c2w))
    if method in (CAMERACTRL, CAMI2V):
        batch, frames = relative_c2w.shape[:2]
        k = intrinsics(height, width, frames, batch).to(relative_c2w.device)
        rays = plucker(k, relative_c2w, height, width)
        features = unet.pose_encoder(rays.to(dtype or rays.dtype))
        if method == CAMERACTRL:
            return CameraCtrlCamera(features)
        fundamental = fundamental_matrices(relative_c2w, k, torch.Generator().manual_seed(seed))
        masks = {}
        for level in epipolar_levels:
            cell = 8 * level
            masks[height // cell] = epipolar_mask(fundamental, height // cell, width // cell, cell)
        return CamI2VCamera(features, masks)
    raise ValueError(f"unknown camera method {method!r}; known: {', '.join(METHODS)}")


def detect_method(sd: Any) -> str | None:
    """The camera method whose layers a UNet state dict (keys without ``model.diffusion_model.``) carries."""
    projection = next((k for k in sd if k.endswith((".cc_projection.weight", ".pluker_projection.weight"))), None)
    if projection is None:
        return None
    out_features, in_features = sd[projection].shape
    if in_features == out_features + POSE_DIM:
        return MOTIONCTRL
    if "pose_encoder.encoder_conv_in.weight" in sd and any(".epipolar.epipolar_attn." in k for k in sd):
        pose_encoder_config_from_state_dict(sd)
        return CAMI2V
    if in_features == out_features and "pose_encoder.encoder_conv_in.weight" in sd:
        pose_encoder_config_from_state_dict(sd)  # every part of the encoder is there
        return CAMERACTRL
    raise ValueError(
        f"{projection} is {list(sd[projection].shape)}: a camera layer of a method this pack does not load yet "
        f"(it loads {', '.join(METHODS)})"
    )
