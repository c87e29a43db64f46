"""The camera-control workflows (``camera_control_256``, ``camera_control_512``) in the real host: they validate on
tiny files under the names they load (the base checkpoint, and a camera file holding only the camera layers, laid
over it as the loader does), they declare their model files for one-click download, and the 256 one runs end to
end at 128x64, 1 step, with the path preview on its node."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import pytest
import torch

from dynamicrafter.camera.layers import CAMI2V
from dynamicrafter.unet import DynamiCrafterUNet
from support import workflow_runs as NEW
from support.comfy_server import WORKFLOW_INPUTS, load_api_workflow, workflow_names
from support.host_checkpoints import HOST_UNET, write_host_checkpoint
from support.reference_data import manifest_path
from support.workflow_checks import load_ui

NAMES = ["camera_control_256", "camera_control_512"]


def _camera_layers(learnable: bool) -> dict[str, torch.Tensor]:
    """Random CamI2V layers for the host test network, keyed as in a released file."""
    unet = DynamiCrafterUNet(
        dataclasses.replace(HOST_UNET, camera=CAMI2V, image_cross_attention_scale_learnable=learnable)
    )
    g = torch.Generator().manual_seed(9)
    out = {}
    for key, value in unet.state_dict().items():
        if key.startswith("pose_encoder.") and key.endswith(".pe"):
            out[key] = value
        elif key.startswith("pose_encoder.") or "pluker_projection" in key or ".epipolar." in key:
            draw = torch.randn(value.shape, generator=g) / (value[0].numel() ** 0.5 if value.ndim > 1 else 10)
            out[key if key.startswith("pose_encoder.") else f"model.diffusion_model.{key}"] = draw
    return out


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("camera-workflow-models")
    for name in NAMES:
        size = name.rsplit("_", 1)[1]
        inputs = NEW.of_type(load_api_workflow(name), "DynamiCrafterLoadCameraModel")
        write_host_checkpoint(folder / inputs["base_checkpoint"], size, manifest_path(size), "ckpt")
        torch.save({"state_dict": _camera_layers(size == "256")}, folder / inputs["camera_checkpoint"])
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    for picture in WORKFLOW_INPUTS.glob("*.png"):
        (Path(comfy_host.folder_paths.get_input_directory()) / picture.name).write_bytes(picture.read_bytes())
    return comfy_host


def tiny(name: str) -> dict:
    prompt = load_api_workflow(name)
    NEW.of_type(prompt, "DynamiCrafterImageToVideo").update(width=NEW.WIDTH, height=NEW.HEIGHT)
    NEW.of_type(prompt, "DynamiCrafterSampler")["steps"] = 1
    return prompt


def test_the_workflows_are_shipped_with_their_models():
    for name in NAMES:
        assert name in workflow_names()
        ui = load_ui(name)
        models = [m for n in ui["nodes"] for m in n.get("properties", {}).get("models", [])]
        urls = {m["name"]: m["url"] for m in models}
        camera = NEW.of_type(load_api_workflow(name), "DynamiCrafterLoadCameraModel")["camera_checkpoint"]
        assert urls[camera] == f"https://huggingface.co/MuteApo/CamI2V/resolve/main/{camera}"
        assert all(m["directory"] == "checkpoints" for m in models)


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_validates(host, name):
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, tiny(name), None))
    assert valid, f"{error} {node_errors}"
    types = sorted(tiny(name)[o]["class_type"] for o in outputs)
    assert types == ["DynamiCrafterCameraPreview", "SaveVideo"]


def test_the_256_workflow_runs(host):
    prompt = tiny("camera_control_256")
    (sampler,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterSampler"]
    (preview,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterCameraPreview"]
    run = NEW.run_timed(host, prompt, outputs=[sampler, preview])
    latent = run.outputs[sampler][0][0]["samples"]
    assert latent.shape == (16, 4, NEW.HEIGHT // 8, NEW.WIDTH // 8) and torch.isfinite(latent).all()
    assert run.outputs[preview][0][0].shape[-1] == 3
