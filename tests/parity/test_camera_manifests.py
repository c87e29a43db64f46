"""Full-size structure of the released camera checkpoints (manifests derived from the CamI2V configs)."""

from __future__ import annotations

import json

import pytest
import torch

from dynamicrafter.camera.layers import CAMERACTRL, CAMI2V, MOTIONCTRL
from dynamicrafter.checkpoint import checkpoint_from_state_dict, split_parts
from dynamicrafter.unet import DynamiCrafterUNet
from support.reference_data import MANIFESTS

CAMERA = {
    "camera_motionctrl_256": MOTIONCTRL,
    "camera_cameractrl_256": CAMERACTRL,
    "camera_cami2v_256": CAMI2V,
    "camera_cami2v_512": CAMI2V,
    "camera_realcam_256": CAMI2V,  # RealCam-I2V's camera part is CamI2V's
    "camera_realcam_512": CAMI2V,
}
CAMERA_PARTS = ("cc_projection", "pluker_projection", ".epipolar.")


def _manifest(name: str) -> dict:
    return json.loads((MANIFESTS / f"{name}.json").read_text())


@pytest.mark.parametrize(("name", "method"), CAMERA.items())
def test_file_in_the_manifest_layout_is_detected_and_fits_our_network(name, method):
    manifest = _manifest(name)
    sd = {k: torch.empty(shape, device="meta") for k, shape in manifest["keys"].items()}
    ckpt = checkpoint_from_state_dict(f"{name}.pt", sd)
    assert ckpt.unet_config.camera == method and ckpt.variant.name == name.rsplit("_", 1)[1]
    with torch.device("meta"):
        unet = DynamiCrafterUNet(ckpt.unet_config)
    expected = {k: tuple(v.shape) for k, v in ckpt.require("unet").items()}
    assert {k: tuple(v.shape) for k, v in unet.state_dict().items()} == expected
    camera = {k.removeprefix("model.diffusion_model."): tuple(v) for k, v in manifest["camera_keys"].items()}
    ours = {k: v for k, v in expected.items() if any(p in k for p in CAMERA_PARTS) or k.startswith("pose_encoder.")}
    assert camera and ours == camera


@pytest.mark.parametrize("name", CAMERA)
def test_camera_keys_are_unet_keys_and_the_rest_is_the_base_layout(name):
    manifest = _manifest(name)
    base = _manifest(f"dynamicrafter_{name.rsplit('_', 1)[1]}")["keys"]
    parts, _ = split_parts({k: torch.empty(s, device="meta") for k, s in manifest["keys"].items()})
    in_unet = {k if k.startswith("pose_encoder.") else f"model.diffusion_model.{k}" for k in parts["unet"]}
    assert set(manifest["camera_keys"]) <= in_unet
    assert all(k.startswith(("model.diffusion_model.", "pose_encoder.")) for k in manifest["camera_keys"])
    assert {k: v for k, v in manifest["keys"].items() if k not in manifest["camera_keys"]} == base


def test_base_file_has_no_camera():
    sd = {k: torch.empty(s, device="meta") for k, s in _manifest("dynamicrafter_256")["keys"].items()}
    assert checkpoint_from_state_dict("model.ckpt", sd).unet_config.camera is None
