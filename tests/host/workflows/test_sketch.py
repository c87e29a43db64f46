"""The shipped 'ToonCrafter with sketches' workflow end to end in the real host, on a ToonCrafter file whose UNet
has SD 2.1's widths (what the host takes ControlNets at) and a sketch encoder of the same layout (the released
pickled ``.ckpt``; Kijai's fp16 safetensors loads into the same network). Its generic checks (validation,
frontend layout, notes) are those of ``test_new_workflows.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from support import workflow_runs as NEW
from support.comfy_server import WORKFLOW_INPUTS, load_api_workflow
from support.modules import load_by_path
from support.stock_model_files import write_controlnet, write_sd21_layout_tooncrafter
from support.stock_nodes import call_node

HERE = Path(__file__).resolve().parent
TOON = load_by_path("_sketch_workflow_tooncrafter", HERE.parent / "nodes" / "test_tooncrafter.py")
NAME = "tooncrafter_sketch_512"
TOON_FILE = "tooncrafter_512_interp_sd21_layout_tiny.safetensors"
KIJAI_FILE = "sketch_encoder-fp16.safetensors"


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("sketch-workflow-models")
    write_sd21_layout_tooncrafter(folder / TOON_FILE, TOON.tiny_tooncrafter_vae_state_dict())
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    (folder / "controlnet").mkdir()
    for name in (NEW.SKETCH_ENCODER, KIJAI_FILE):
        write_controlnet(folder / "controlnet" / name)
    comfy_host.folder_paths.add_model_folder_path("controlnet", str(folder / "controlnet"))
    for picture in WORKFLOW_INPUTS.glob("*.png"):
        shutil.copy(picture, Path(comfy_host.folder_paths.get_input_directory()) / picture.name)
    return comfy_host


def _prompt(encoder: str):
    prompt = load_api_workflow(NAME)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "DynamiCrafterToonCrafterLoader":
            inputs["ckpt_name"] = TOON_FILE
        if node["class_type"] == "DynamiCrafterInterpolation":
            inputs.update(width=NEW.WIDTH, height=NEW.HEIGHT)
        if node["class_type"] == "DynamiCrafterSampler":
            inputs["steps"] = NEW.STEPS
        if node["class_type"] == "ControlNetLoader":
            assert inputs["control_net_name"] == NEW.SKETCH_ENCODER
            inputs["control_net_name"] = encoder
    return prompt


def test_sketch_workflow_runs_and_the_sketch_steers(host):
    prompt = _prompt(NEW.SKETCH_ENCODER)
    steered, plain = NEW.sampled_with_strength(host, prompt, "DynamiCrafterSketchGuidance", "strength")
    assert steered.isfinite().all() and (steered - plain).abs().max() > 1e-4


def test_kijais_fp16_file_loads_as_the_same_sketch_encoder(host):
    """The workflow's loader reads Kijai's fp16 safetensors into the network the released ``.ckpt`` gives (the
    same weights to fp16 rounding), which the sketch node accepts: the rest of the run is the one above."""
    sketch = host.import_pack_module("nodes.sketch")
    loader = host.nodes.NODE_CLASS_MAPPINGS["ControlNetLoader"]
    released, kijai = (call_node(loader, control_net_name=name)[0] for name in (NEW.SKETCH_ENCODER, KIJAI_FILE))
    assert sketch.sketch_encoder_problem(kijai) is None
    weights, fp16 = released.control_model.state_dict(), kijai.control_model.state_dict()
    assert weights.keys() == fp16.keys()
    for key, value in weights.items():
        assert torch.allclose(fp16[key].float(), value.half().float()), key


def test_the_workflow_guides_one_middle_frame_between_conditioning_and_sampler():
    prompt = load_api_workflow(NAME)
    ids = {n["class_type"]: k for k, n in prompt.items() if n["class_type"] != "LoadImage"}
    apply = prompt[ids["DynamiCrafterSketchGuidance"]]["inputs"]
    sampler = prompt[ids["DynamiCrafterSampler"]]["inputs"]
    conditioning = ids["DynamiCrafterInterpolation"]
    assert (apply["positive"], apply["negative"]) == ([conditioning, 0], [conditioning, 1])
    assert (sampler["positive"], sampler["negative"]) == (
        [ids["DynamiCrafterSketchGuidance"], 0],
        [ids["DynamiCrafterSketchGuidance"], 1],
    )
    assert apply["control_net"] == [ids["ControlNetLoader"], 0]
    assert (apply["frames"], apply["strength"], apply["invert"]) == ("8", 0.6, False)
