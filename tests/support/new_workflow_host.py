"""The in-process host the keyframe-chain, long-video, ToonCrafter and director workflows run in: tiny checkpoints
for every file they load, the example pictures in the input folder, and each workflow shrunk to 128x64, 1 step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from dynamicrafter.checkpoint import PART_PREFIXES
from support.comfy_server import WORKFLOW_INPUTS, load_api_workflow
from support.host_checkpoints import host_state_dict, write_host_checkpoint
from support.modules import load_by_path
from support.reference_data import manifest_path
from support.stock_model_files import write_controlnet
from support.workflow_checks import NEW_NAMES
from support.workflow_runs import HEIGHT, SKETCH_ENCODER, STEPS, WIDTH

HOST_TESTS = Path(__file__).resolve().parents[1] / "host"

TOON = load_by_path("_new_workflows_tooncrafter", HOST_TESTS / "nodes" / "test_tooncrafter.py")

NEW = NEW_NAMES
"""The workflows these checks cover (test_workflows.py checks the others)."""
TINY = {
    "dynamicrafter_512_v1.ckpt": "dynamicrafter_tiny_512.ckpt",
    "dynamicrafter_512_interp_v1.ckpt": "dynamicrafter_tiny_512_interp.ckpt",
    "tooncrafter_512_interp.ckpt": "tooncrafter_tiny_512_interp.safetensors",
}
SIZED = {
    "DynamiCrafterImageToVideo",
    "DynamiCrafterInterpolation",
    "DynamiCrafterKeyframeChain",
    "DynamiCrafterLongVideo",
    "ImageScale",  # fits a video's frames or a picture to the video size (test_control_workflows.py)
}
SAMPLING = {"DynamiCrafterSampler", "DynamiCrafterKeyframeChain", "DynamiCrafterLongVideo"}


def provision(comfy_host, tmp_path_factory) -> Any:
    """Tiny checkpoints for every file the new workflows load (one model folder for the module), the pictures."""
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("new-workflow-models")
    manifest = manifest_path("512")
    write_host_checkpoint(folder / TINY["dynamicrafter_512_v1.ckpt"], "512", manifest, "ckpt")
    os.link(folder / TINY["dynamicrafter_512_v1.ckpt"], folder / TINY["dynamicrafter_512_interp_v1.ckpt"])
    interp_manifest = manifest_path("512_interp")
    sd = {
        k: v
        for k, v in host_state_dict("512_interp", interp_manifest).items()
        if not k.startswith(PART_PREFIXES["vae"])
    }
    sd.update({PART_PREFIXES["vae"] + k: v for k, v in TOON.tiny_tooncrafter_vae_state_dict().items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / TINY["tooncrafter_512_interp.ckpt"]))
    del sd
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    (folder / "controlnet").mkdir()
    write_controlnet(
        folder / "controlnet" / SKETCH_ENCODER
    )  # for validation; tests/host/workflows/test_sketch.py runs it
    comfy_host.folder_paths.add_model_folder_path("controlnet", str(folder / "controlnet"))
    for picture in WORKFLOW_INPUTS.iterdir():  # the example pictures and video
        shutil.copy(picture, Path(comfy_host.folder_paths.get_input_directory()) / picture.name)
    return comfy_host


def tiny(name: str) -> dict[str, Any]:
    """A new API workflow on the tiny checkpoints at 128x64, 1 step."""
    prompt = load_api_workflow(name)
    for node in prompt.values():
        inputs = node["inputs"]
        if "ckpt_name" in inputs:
            inputs["ckpt_name"] = TINY[inputs["ckpt_name"]]
        if node["class_type"] in SIZED:
            inputs.update(width=WIDTH, height=HEIGHT)
        if node["class_type"] in SAMPLING:
            inputs["steps"] = STEPS
    return prompt
