"""CamI2V (epipolar masks, encoder features, one UNet call) against the CamI2V reference (tests/data/parity_camera)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.camera.epipolar import epipolar_mask, fundamental_matrices
from dynamicrafter.camera.hook import CAMERA_OPTION
from dynamicrafter.camera.layers import CAMI2V, EPIPOLAR_LEVELS, camera_hook
from dynamicrafter.camera.path import plucker, relative_c2w
from dynamicrafter.checkpoint import checkpoint_from_state_dict
from dynamicrafter.unet import DynamiCrafterUNet
from support.parity_data import relative_error
from support.reference_data import DATA

GOLDENS = DATA / "parity_camera"
TOL = 1e-4
SEED = 77  # the generator's PERTURBATION_SEED


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "cami2v.safetensors"))


@pytest.fixture(scope="module")
def unet(golden) -> DynamiCrafterUNet:
    sd = {k.removeprefix("weights/"): v for k, v in golden.items() if k.startswith("weights/")}
    ckpt = checkpoint_from_state_dict(Path("256_cami2v.pt"), sd)
    assert ckpt.unet_config.camera == CAMI2V
    net = DynamiCrafterUNet(ckpt.unet_config).eval()
    net.load_state_dict(ckpt.require("unet"), strict=True)
    return net


@pytest.fixture(scope="module")
def poses() -> torch.Tensor:
    return relative_c2w(load_file(str(GOLDENS / "paths.safetensors"))["batch_RT"])


def _pixels(golden) -> tuple[int, int]:
    return 8 * golden["x"].shape[-2], 8 * golden["x"].shape[-1]


def test_epipolar_mask_matches(golden, poses):
    height, width = _pixels(golden)
    fundamental = fundamental_matrices(poses, golden["intrinsics"], torch.Generator().manual_seed(SEED))
    mask = epipolar_mask(fundamental, height // 16, width // 16, 16)
    assert mask.shape == golden["mask_16"].shape
    assert 0.05 < mask.float().mean() < 0.95  # neither empty nor full: the lines select
    assert torch.equal(mask, golden["mask_16"])


def test_pose_encoder_features_match(unet, golden, poses):
    with torch.no_grad():
        features = unet.pose_encoder(plucker(golden["intrinsics"], poses, *_pixels(golden)))
    for level, feature in enumerate(features):
        assert relative_error(feature, golden[f"features/{level}"]) < TOL, level


def test_unet_call_with_camera_matches_reference(unet, golden, poses):
    with torch.no_grad():
        hook = camera_hook(unet, poses, *_pixels(golden), seed=SEED)
        out = unet(
            golden["x"], golden["timesteps"], golden["context"], golden["fs"], transformer_options={CAMERA_OPTION: hook}
        )
    assert relative_error(out, golden["unet_out"]) < TOL


def test_unet_call_without_camera_matches_reference(unet, golden):
    with torch.no_grad():
        out = unet(golden["x"], golden["timesteps"], golden["context"], golden["fs"])
    assert relative_error(out, golden["unet_out_without_camera"]) < TOL


def test_the_epipolar_masks_matter(unet, golden, poses):
    """The check can fail: without the masks (every token attends everywhere) the output moves."""
    with torch.no_grad():
        hook = camera_hook(unet, poses, *_pixels(golden), seed=SEED, epipolar_levels=())
        out = unet(
            golden["x"], golden["timesteps"], golden["context"], golden["fs"], transformer_options={CAMERA_OPTION: hook}
        )
    assert relative_error(out, golden["unet_out"]) > 10 * TOL


def test_ddim_run_with_camera_matches_reference(unet, golden, poses, single_thread):
    """5 DDIM steps with the reference demo's 256 settings (uniform_trailing, CFG 7.5, guidance rescale 0.7, eta 0),
    the camera on the positive and the negative side, as the reference's sampler gives it."""
    from dynamicrafter.config import VARIANTS
    from dynamicrafter.ddim import DDIMSettings, ddim_sample
    from dynamicrafter.schedule import make_schedule

    c_concat = golden["x"][:, 4:]
    with torch.no_grad():
        hook = camera_hook(unet, poses, *_pixels(golden), seed=SEED)

        def model(x, timestep, context):
            options = {CAMERA_OPTION: hook}
            return unet(torch.cat([x, c_concat], dim=1), timestep, context, golden["fs"], transformer_options=options)

        settings = DDIMSettings(
            steps=5, eta=0.0, cfg=7.5, spacing="uniform_trailing", guidance_rescale=0.7, dynamic_rescale=False
        )
        schedule = make_schedule(VARIANTS["256"].schedule)
        x_t = golden["ddim/x_T"]
        steps = ddim_sample(
            model, x_t, schedule, "eps", settings, golden["context"], golden["ddim/uc_context"], noise=lambda i: 0 * x_t
        )
        final = [x for _, x, _ in steps][-1]
    assert relative_error(final, golden["ddim/final"]) < TOL


def test_512_release_levels_match_reference(unet, golden, poses):
    """The 512 release masks levels 8, 4 and 2 only; level 1 attends to every token (its attention_resolution)."""
    with torch.no_grad():
        hook = camera_hook(unet, poses, *_pixels(golden), seed=SEED, epipolar_levels=EPIPOLAR_LEVELS["512"])
        out = unet(
            golden["x"], golden["timesteps"], golden["context"], golden["fs"], transformer_options={CAMERA_OPTION: hook}
        )
    assert relative_error(out, golden["unet_out_levels_842"]) < TOL
    assert relative_error(golden["unet_out_levels_842"], golden["unet_out"]) > 10 * TOL


def test_realcam_camera_part_matches_reference(unet, golden):
    """RealCam-I2V's camera part is CamI2V's with the translations times the scene's metric depth scale (its
    ``per_frame_scale`` at the conditioning frame): the pack gives that scale through the trace scale."""
    realcam = load_file(str(GOLDENS / "realcam.safetensors"))
    rt = load_file(str(GOLDENS / "paths.safetensors"))["batch_RT"]
    poses = torch.cat([relative_c2w(rt[i : i + 1], 0, float(s)) for i, s in enumerate(realcam["depth_scale"])])
    with torch.no_grad():
        hook = camera_hook(unet, poses, *_pixels(golden), seed=SEED)
        out = unet(
            golden["x"], golden["timesteps"], golden["context"], golden["fs"], transformer_options={CAMERA_OPTION: hook}
        )
    assert relative_error(out, realcam["unet_out"]) < TOL
    assert relative_error(realcam["unet_out"], golden["unet_out"]) > 10 * TOL  # the scale matters
