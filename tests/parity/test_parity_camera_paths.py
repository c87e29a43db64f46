"""Camera paths against the CamI2V reference (goldens in tests/data/parity_camera, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynamicrafter.camera import path as camera

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "parity_camera"
PATHS = load_file(str(GOLDENS / "paths.safetensors"))
HEIGHT, WIDTH = PATHS["plucker_c0"].shape[-2:]


def test_goldens_record_their_provenance():
    meta = json.loads((GOLDENS / "provenance.json").read_text())
    assert meta["repo"] == "ZGCTroy/CamI2V" and meta["commit"] == "c5d7b2f"
    assert "CameraControl/base/base.py" in meta["git_blob_sha1"]


def test_file_reads_as_the_reference_reads_it():
    path = camera.read_realestate10k((GOLDENS / "path.txt").read_text())
    assert torch.equal(path.w2c, PATHS["file_w2c"])


@pytest.mark.parametrize(("ratio", "tag"), [(1.0, "r100"), (0.6, "r060")])
def test_resampling_to_16_frames_matches(ratio, tag):
    path = camera.read_realestate10k((GOLDENS / "path.txt").read_text())
    resampled = camera.resample(path, 16, ratio)
    torch.testing.assert_close(resampled.w2c, PATHS[f"{tag}_RT"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("cond", "scale"), [(0, 1.0), (5, 1.7)])
def test_normalisation_and_motionctrl_pose_match(cond, scale):
    relative = camera.relative_c2w(PATHS["batch_RT"], cond, scale)
    torch.testing.assert_close(relative, PATHS[f"relative_c2w_c{cond}"], rtol=0, atol=1e-5)
    torch.testing.assert_close(camera.motionctrl_pose(relative), PATHS[f"motion_RT_c{cond}"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("cond", [0, 5])
def test_plucker_rays_match(cond):
    k = camera.intrinsics(HEIGHT, WIDTH, 16, batch=2)
    rays = camera.plucker(k, PATHS[f"relative_c2w_c{cond}"], HEIGHT, WIDTH)
    assert rays.shape == PATHS[f"plucker_c{cond}"].shape
    torch.testing.assert_close(rays, PATHS[f"plucker_c{cond}"], rtol=0, atol=1e-5)


def test_a_changed_pose_breaks_the_match():
    """The comparison can fail: one frame nudged moves that frame's rays."""
    w2c = PATHS["batch_RT"].clone()
    w2c[0, 7, 0, 3] += 0.01
    rays = camera.plucker(camera.intrinsics(HEIGHT, WIDTH, 16, 2), camera.relative_c2w(w2c), HEIGHT, WIDTH)
    assert not torch.allclose(rays, PATHS["plucker_c0"], atol=1e-5)
