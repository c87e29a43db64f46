"""Load Camera Model: a whole camera file, or one that holds only the trained layers over its base checkpoint.

(The pack's error classes are the host-imported package's: errors are matched as the ValueError they are.)
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from dynamicrafter.camera.layers import CAMI2V

from .test_camera import _camera_checkpoint  # noqa: TID252  (the tiny camera checkpoints of the host tests)


def _files(tmp_path):
    ckpt = _camera_checkpoint(CAMI2V)
    full = {
        f"model.diffusion_model.{k}": v for k, v in ckpt.require("unet").items() if not k.startswith("pose_encoder.")
    }
    full.update({k: v for k, v in ckpt.require("unet").items() if k.startswith("pose_encoder.")})
    full.update({f"image_proj_model.{k}": v for k, v in ckpt.require("resampler").items()})
    camera = {
        k: v for k, v in full.items() if "pluker_projection" in k or ".epipolar." in k or k.startswith("pose_encoder.")
    }
    base = {k: v for k, v in full.items() if k not in camera}
    paths = {}
    for name, sd in {"full": full, "delta": camera, "base": base}.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(paths[name]))
    return paths


def test_delta_over_base_loads_as_the_whole_file(comfy_host, tmp_path):
    loader = comfy_host.import_pack_module("nodes.camera_loader")
    paths = _files(tmp_path)
    whole = loader.camera_checkpoint_of(str(paths["full"]), None, None)
    laid = loader.camera_checkpoint_of(str(paths["delta"]), str(paths["base"]), None)
    assert whole.unet_config == laid.unet_config and whole.unet_config.camera == CAMI2V
    a, b = whole.require("unet"), laid.require("unet")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_delta_alone_says_to_choose_the_base(comfy_host, tmp_path):
    loader = comfy_host.import_pack_module("nodes.camera_loader")
    paths = _files(tmp_path)
    with pytest.raises(ValueError, match="holds only camera layers.*choose the base DynamiCrafter checkpoint"):
        loader.camera_checkpoint_of(str(paths["delta"]), None, None)


def test_files_in_the_wrong_slot_are_refused(comfy_host, tmp_path):
    loader = comfy_host.import_pack_module("nodes.camera_loader")
    paths = _files(tmp_path)
    with pytest.raises(ValueError, match="holds no camera layers"):
        loader.camera_checkpoint_of(str(paths["base"]), None, None)
    with pytest.raises(ValueError, match="is a camera checkpoint itself"):
        loader.camera_checkpoint_of(str(paths["delta"]), str(paths["full"]), None)
