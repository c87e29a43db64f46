"""The camera hooks leave every block without camera layers alone: a base network is bit-identical with any hook."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dynamicrafter.camera import preset
from dynamicrafter.camera.hook import CAMERA_OPTION
from dynamicrafter.camera.layers import CAMERACTRL, CAMI2V, MOTIONCTRL, camera_hook
from dynamicrafter.camera.path import relative_c2w
from dynamicrafter.config import UNetConfig
from dynamicrafter.unet import DynamiCrafterUNet

SMALL = UNetConfig(
    model_channels=32, channel_mult=(1, 1), num_res_blocks=1, attention_resolutions=(1, 2), num_head_channels=16,
    context_dim=48,
)  # fmt: skip


@pytest.mark.parametrize("method", [MOTIONCTRL, CAMERACTRL, CAMI2V])
def test_base_network_ignores_every_camera_hook(method):
    torch.manual_seed(0)
    base = DynamiCrafterUNet(SMALL).eval()
    camera_net = DynamiCrafterUNet(dataclasses.replace(SMALL, camera=method)).eval()
    poses = relative_c2w(preset("orbit left", 16).w2c[None])
    hook = camera_hook(camera_net, poses, 64, 64)
    x = torch.randn(1, 8, 16, 8, 8)
    t, context = torch.tensor([500]), torch.randn(1, 77 + 16, 48)
    with torch.no_grad():
        plain = base(x, t, context)
        hooked = base(x, t, context, transformer_options={CAMERA_OPTION: hook})
    assert torch.equal(plain, hooked)


@pytest.mark.parametrize("method", [MOTIONCTRL, CAMERACTRL, CAMI2V])
def test_camera_network_without_a_camera_is_the_base_network(method):
    """The camera layers act only through the hook: without it the camera network computes the base network."""
    torch.manual_seed(0)
    base = DynamiCrafterUNet(SMALL).eval()
    camera_net = DynamiCrafterUNet(dataclasses.replace(SMALL, camera=method)).eval()
    missing, unexpected = camera_net.load_state_dict(base.state_dict(), strict=False)
    assert (
        not unexpected and missing and all("projection" in k or "epipolar" in k or "pose_encoder" in k for k in missing)
    )
    x = torch.randn(1, 8, 16, 8, 8)
    t, context = torch.tensor([500]), torch.randn(1, 77 + 16, 48)
    with torch.no_grad():
        assert torch.equal(base(x, t, context), camera_net(x, t, context))
