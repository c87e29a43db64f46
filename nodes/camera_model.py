"""The camera path in the host model: the conditioning entry, its checks, and the UNet's camera hook."""

from __future__ import annotations

import comfy.conds
import torch

from ..dynamicrafter.camera.hook import CAMERA_OPTION
from ..dynamicrafter.camera.layers import EPIPOLAR_LEVELS, camera_hook
from ..dynamicrafter.config import UNetConfig

METHOD_NAMES = {"motionctrl": "MotionCtrl", "cameractrl": "CameraCtrl", "cami2v": "CamI2V"}
NEEDS_CAMERA = (
    "this is a {method} camera model: it needs a camera path. Connect a camera (e.g. 'DynamiCrafter Camera "
    "Preset') through 'DynamiCrafter Apply Camera' to the positive and negative conditioning"
)
NO_CAMERA_LAYERS = (
    "the conditioning carries a camera path, but the loaded DynamiCrafter model has no camera layers: load a camera "
    "checkpoint (e.g. 256_motionctrl.pt from MuteApo/CamI2V) or remove 'DynamiCrafter Apply Camera'"
)


def camera_cond(config: UNetConfig, camera: torch.Tensor | None, frames: int) -> comfy.conds.CONDRegular | None:
    """The camera poses ``[1, T, 4, 4]`` as a conditioning entry, checked against the model and the video."""
    if camera is None:
        if config.camera is not None:
            raise ValueError(NEEDS_CAMERA.format(method=METHOD_NAMES.get(config.camera, config.camera)))
        return None
    if config.camera is None:
        raise ValueError(NO_CAMERA_LAYERS)
    if camera.shape[-3] != frames:
        raise ValueError(
            f"the camera path has {camera.shape[-3]} frames but the video has {frames}: set the camera node's "
            "frames to the conditioning node's"
        )
    return comfy.conds.CONDRegular(camera)


def with_camera(unet: torch.nn.Module, camera: torch.Tensor, x: torch.Tensor, options: dict) -> dict:
    """``options`` plus the camera hook for this call (``camera``: one row of poses per video, ``x``: the videos)."""
    release = "256" if unet.config.image_cross_attention_scale_learnable else "512"  # as the variant detection
    hook = camera_hook(unet, camera, x.shape[-2] * 8, x.shape[-1] * 8, x.dtype, EPIPOLAR_LEVELS[release])
    return {**options, CAMERA_OPTION: hook}
