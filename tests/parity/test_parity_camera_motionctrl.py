"""MotionCtrl (one UNet call) against the CamI2V reference (goldens in tests/data/parity_camera, see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.camera.hook import CAMERA_OPTION
from dynamicrafter.camera.layers import MOTIONCTRL, MotionCtrlCamera, camera_hook
from dynamicrafter.camera.path import relative_c2w
from dynamicrafter.checkpoint import checkpoint_from_state_dict
from dynamicrafter.unet import DynamiCrafterUNet
from support.parity_data import relative_error
from support.reference_data import DATA

GOLDENS = DATA / "parity_camera"
SMALL = DATA / "parity" / "small_256"
TOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "motionctrl.safetensors"))


@pytest.fixture(scope="module")
def unet(golden) -> DynamiCrafterUNet:
    """The small_256 network plus the golden's camera layers, read as one file in the released layout."""
    sd = {**load_file(str(SMALL / "weights.safetensors")), **load_file(str(SMALL / "buffers.safetensors"))}
    sd.update({k.removeprefix("weights/"): v for k, v in golden.items() if k.startswith("weights/")})
    ckpt = checkpoint_from_state_dict(Path("256_motionctrl.pt"), sd)
    assert ckpt.unet_config.camera == MOTIONCTRL
    net = DynamiCrafterUNet(ckpt.unet_config).eval()
    net.load_state_dict(ckpt.require("unet"), strict=True)
    return net


def _call(unet, golden, options) -> torch.Tensor:
    with torch.no_grad():
        return unet(golden["x"], golden["timesteps"], golden["context"], golden["fs"], transformer_options=options)


def test_camera_pose_from_the_path_matches(unet, golden):
    paths = load_file(str(GOLDENS / "paths.safetensors"))
    hook = camera_hook(unet, relative_c2w(paths["batch_RT"]), 64, 128)
    torch.testing.assert_close(hook.pose, golden["camera_RT"], rtol=0, atol=1e-5)


def test_unet_call_with_camera_matches_reference(unet, golden):
    out = _call(unet, golden, {CAMERA_OPTION: MotionCtrlCamera(golden["camera_RT"])})
    assert relative_error(out, golden["unet_out"]) < TOL


def test_unet_call_without_camera_matches_reference(unet, golden):
    """The reference's MotionCtrl without a camera skips its projection, as the pack does without the option."""
    assert relative_error(_call(unet, golden, {}), golden["unet_out_without_camera"]) < TOL


def test_the_camera_changes_the_output(unet, golden):
    """The check can fail: another path gives another output, far outside the tolerance."""
    out = _call(unet, golden, {CAMERA_OPTION: MotionCtrlCamera(golden["camera_RT"].flip(1))})
    assert relative_error(out, golden["unet_out"]) > 100 * TOL
