"""Camera checkpoints that hold only what their training changed, read over the base DynamiCrafter checkpoint.

The CamI2V reference's loader takes a released camera file whole when it has every key, and otherwise lays it
over the base checkpoint of its config (RealCam-I2V's config names both files); this does the same.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from ..checkpoint import (
    CheckpointError,
    DynamiCrafterCheckpoint,
    SafetensorsReader,
    checkpoint_from_state_dict,
    read_state_dict,
)

log = logging.getLogger(__name__)

CAMERA_KEY_PARTS = (".cc_projection.", ".pluker_projection.", ".epipolar.", "pose_encoder.")


def camera_keys(sd: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k in sd if any(part in k for part in CAMERA_KEY_PARTS)]


def camera_checkpoint(
    camera_path: str | os.PathLike,
    base_path: str | os.PathLike | None = None,
    variant: str | None = None,
    reader: SafetensorsReader | None = None,
    mmap: bool = True,
) -> DynamiCrafterCheckpoint:
    """The camera file, laid over ``base_path`` when given (the camera file's tensors win)."""
    camera = read_state_dict(camera_path, reader, mmap)
    if not camera_keys(camera):
        raise CheckpointError(
            camera_path,
            "holds no camera layers (cc_projection, pluker_projection, epipolar, pose_encoder): it is not a "
            "MotionCtrl, CameraCtrl, CamI2V or RealCam-I2V file (MuteApo/CamI2V); load other files with "
            "'DynamiCrafter Load Checkpoint'",
        )
    if base_path is None:
        if not any(k.endswith("input_blocks.0.0.weight") for k in camera):
            raise CheckpointError(
                camera_path,
                f"holds only camera layers ({len(camera)} tensors): choose the base DynamiCrafter checkpoint it was "
                "trained from (model.ckpt of Doubiiu/DynamiCrafter for 256 files, of DynamiCrafter_512 for 512 ones)",
            )
        return checkpoint_from_state_dict(camera_path, camera, variant)
    base = read_state_dict(base_path, reader, mmap)
    if camera_keys(base):
        raise CheckpointError(base_path, "is a camera checkpoint itself; the base is a plain DynamiCrafter file")
    replaced = sum(1 for k in camera if k in base)
    log.info(
        "%s: %d tensors laid over %s (%d of them replace the base's)",
        os.path.basename(camera_path),
        len(camera),
        os.path.basename(base_path),
        replaced,
    )
    return checkpoint_from_state_dict(camera_path, {**base, **camera}, variant)
