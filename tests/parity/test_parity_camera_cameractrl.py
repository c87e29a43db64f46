"""CameraCtrl (pose encoder features, one UNet call) against the CamI2V reference (tests/data/parity_camera)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.camera.hook import CAMERA_OPTION
from dynamicrafter.camera.layers import CAMERACTRL, CameraCtrlCamera, camera_hook
from dynamicrafter.camera.path import intrinsics, plucker, relative_c2w
from dynamicrafter.checkpoint import checkpoint_from_state_dict
from dynamicrafter.unet import DynamiCrafterUNet
from support.parity_data import relative_error
from support.reference_data import DATA

GOLDENS = DATA / "parity_camera"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "cameractrl.safetensors"))


@pytest.fixture(scope="module")
def unet(golden) -> DynamiCrafterUNet:
    """The golden's network read as one file in the released layout (pose encoder at the top level)."""
    sd = {k.removeprefix("weights/"): v for k, v in golden.items() if k.startswith("weights/")}
    ckpt = checkpoint_from_state_dict(Path("256_cameractrl.pt"), sd)
    assert ckpt.unet_config.camera == CAMERACTRL
    net = DynamiCrafterUNet(ckpt.unet_config).eval()
    net.load_state_dict(ckpt.require("unet"), strict=True)
    return net


@pytest.fixture(scope="module")
def poses() -> torch.Tensor:
    return relative_c2w(load_file(str(GOLDENS / "paths.safetensors"))["batch_RT"])


def _call(unet, golden, options) -> torch.Tensor:
    with torch.no_grad():
        return unet(golden["x"], golden["timesteps"], golden["context"], golden["fs"], transformer_options=options)


def test_intrinsics_are_the_references(golden):
    b, t = golden["intrinsics"].shape[:2]
    height, width = 8 * golden["x"].shape[-2], 8 * golden["x"].shape[-1]
    assert torch.equal(intrinsics(height, width, t, b), golden["intrinsics"])


def test_pose_encoder_features_match(unet, golden, poses):
    height, width = 8 * golden["x"].shape[-2], 8 * golden["x"].shape[-1]
    rays = plucker(golden["intrinsics"], poses, height, width)
    with torch.no_grad():
        features = unet.pose_encoder(rays)
    assert len(features) == 4
    for level, feature in enumerate(features):
        assert relative_error(feature, golden[f"features/{level}"]) < TOL, level


def test_unet_call_with_camera_matches_reference(unet, golden, poses):
    height, width = 8 * golden["x"].shape[-2], 8 * golden["x"].shape[-1]
    with torch.no_grad():
        hook = camera_hook(unet, poses, height, width)
    assert relative_error(_call(unet, golden, {CAMERA_OPTION: hook}), golden["unet_out"]) < TOL


def test_unet_call_without_camera_matches_reference(unet, golden):
    assert relative_error(_call(unet, golden, {}), golden["unet_out_without_camera"]) < TOL


def test_the_features_change_the_output(unet, golden):
    """The check can fail: features of another path give another output."""
    features = [golden[f"features/{level}"].flip(2) for level in range(4)]
    out = _call(unet, golden, {CAMERA_OPTION: CameraCtrlCamera(features)})
    assert relative_error(out, golden["unet_out"]) > 100 * TOL
