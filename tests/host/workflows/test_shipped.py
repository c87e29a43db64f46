"""The shipped example workflows against the real host's node definitions (in-process).

- the committed files are exactly what ``workflows/generate.py`` writes;
- every API workflow validates (``execution.validate_prompt``) on a tiny checkpoint at a tiny size;
- every UI workflow is a LiteGraph graph the frontend can load: its nodes exist, its sockets, outputs and
  links match the node definitions, and its positional ``widgets_values`` follow the frontend's widget
  order (``/object_info`` input order, plus "control after generate" after a seed and Load Image's
  upload button) with values each widget accepts;
- the UI and API versions describe the same graph (converted here from the UI file and the host's
  definitions, independently of the generator);
- the settings are the original's for each variant, and the note explains every widget.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dynamicrafter.config import VARIANTS
from support.comfy_server import (
    API_WORKFLOWS,
    WORKFLOW_INPUTS,
    WORKFLOWS,
    load_api_workflow,
    pack_folder_name,
    shrink_workflow,
    workflow_names,
)
from support.host_checkpoints import host_state_dict, write_host_checkpoint
from support.reference_data import manifest_path
from support.stock_model_files import write_workflow_model_files
from support.workflow_checks import (
    CAMERA_NAMES,
    CIL_NAMES,
    FRONTEND_ONLY,
    NEW_NAMES,
    assert_note_explains_every_widget,
    check_value,
    frontend_layout,
    load_generator,
    load_ui,
    node_info,
    ui_to_api,
)

TINY_CKPT = "dynamicrafter_tiny_512.safetensors"
EXPECTED_NAMES = [
    "controlnet_512",
    "image_to_video_1024",
    "image_to_video_256",
    "image_to_video_512",
    "interpolation_512",
    "loop_512",
    "lora_512",
]
SUBGRAPHS = WORKFLOWS.parent / "subgraphs"
"""The subgraph blueprints the generator makes from the workflows (workflows/gen/blueprints.py)."""
NAMES = [name for name in workflow_names() if name not in NEW_NAMES + CIL_NAMES + CAMERA_NAMES]


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    """The in-process host with the video nodes, a tiny checkpoint, the ControlNet and LoRA files the workflows
    name, and the shipped pictures in its input folder."""
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("workflow-models")
    manifest = manifest_path("512")
    write_host_checkpoint(folder / TINY_CKPT, "512", manifest, "pruned")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder))
    for folder_name in write_workflow_model_files(folder, host_state_dict("512", manifest, with_encoders=False)):
        comfy_host.folder_paths.add_model_folder_path(folder_name, str(folder / folder_name))
    for picture in WORKFLOW_INPUTS.iterdir():  # the example pictures and video
        shutil.copy(picture, Path(comfy_host.folder_paths.get_input_directory()) / picture.name)
    return comfy_host


def validate(host, prompt: dict[str, Any]):
    return asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, prompt, None))


# --------------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------------


def test_the_shipped_set_of_workflows():
    every = sorted(EXPECTED_NAMES + NEW_NAMES + CIL_NAMES + CAMERA_NAMES)
    assert NAMES == EXPECTED_NAMES and workflow_names() == every
    assert sorted(p.stem for p in API_WORKFLOWS.glob("*.json")) == every


def test_committed_files_are_the_generator_output(comfy_host):
    generator = load_generator()  # reads the schemas of the pack comfy_host imported
    expected = generator.json_files()
    committed = {
        os.path.relpath(p, WORKFLOWS): p.read_text(encoding="utf-8")
        for p in [*WORKFLOWS.glob("*.json"), *API_WORKFLOWS.glob("*.json"), *SUBGRAPHS.glob("*.json")]
    }
    assert sorted(committed) == sorted(expected), "run python workflows/generate.py"
    stale = [path for path, text in expected.items() if committed[path] != text]
    assert not stale, f"out of date (run python workflows/generate.py): {stale}"
    for relative, pixels in generator.picture_files().items():
        with Image.open(WORKFLOWS / relative) as image:
            shipped = np.asarray(image.convert("RGB"), dtype=np.int16)
        assert shipped.shape == pixels.shape, relative
        if relative.endswith(".png"):
            assert np.array_equal(shipped, pixels), relative
        else:  # JPEG thumbnails: lossy, and encoders differ slightly between Pillow builds
            assert np.abs(shipped - pixels).mean() < 4, relative


def test_ui_workflows_reference_the_shipped_pictures_and_thumbnails():
    pictures = {p.name for p in WORKFLOW_INPUTS.glob("*.png")}
    for name in NAMES:
        assert (WORKFLOWS / f"{name}.jpg").is_file(), f"{name}: no thumbnail for the template browser"
        images = [n["widgets_values"][0] for n in load_ui(name)["nodes"] if n["type"] == "LoadImage"]
        assert images and set(images) <= pictures, f"{name}: {images} not in workflows/inputs"


# --------------------------------------------------------------------------------------------------
# API format
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_validates_on_a_tiny_checkpoint(host, name):
    prompt = shrink_workflow(load_api_workflow(name), ckpt_name=TINY_CKPT)
    valid, error, outputs, node_errors = validate(host, prompt)
    assert valid, f"{name}: {error} {node_errors}"
    saves = [node_id for node_id, node in prompt.items() if node["class_type"] == "SaveVideo"]
    assert list(outputs) == saves and len(saves) == 1


def test_validation_catches_a_bad_value(host):
    """The check above is real: the same graph with one value out of range is refused."""
    prompt = shrink_workflow(load_api_workflow("image_to_video_512"), ckpt_name=TINY_CKPT)
    (conditioning,) = [n for n in prompt.values() if n["class_type"] == "DynamiCrafterImageToVideo"]
    conditioning["inputs"]["frames"] = 1
    valid, _, _, node_errors = validate(host, prompt)
    assert not valid
    assert "frames" in json.dumps(node_errors)


# --------------------------------------------------------------------------------------------------
# UI format
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_matches_the_node_definitions(host, name):
    ui = load_ui(name)
    assert ui["version"] == 0.4 and isinstance(ui["id"], str)
    links = {row[0]: row for row in ui["links"]}
    assert len(links) == len(ui["links"]) and ui["last_link_id"] == max(links)
    nodes = {node["id"]: node for node in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]) and ui["last_node_id"] == max(nodes)
    pack_ids = {cls.GET_SCHEMA().node_id for cls in host.pack_nodes}
    problems: list[str] = []
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        assert node["type"] in host.nodes.NODE_CLASS_MAPPINGS, f"{name}: unknown node {node['type']}"
        layout = frontend_layout(node_info(host, node["type"]))
        where = f"{name} node {node['id']} ({node['type']})"
        values = node["widgets_values"]
        if not layout.accepts(len(values)):
            problems.append(
                f"{where}: {len(values)} widget values, the frontend builds {len(layout.widgets)} "
                f"({[w[0] for w in layout.widgets]})"
            )
            continue
        for (widget, kind, options), value in zip(layout.widgets, values):
            problem = check_value(node["type"], widget, kind, options, value)
            if problem:
                problems.append(f"{where}: {problem}")
        sockets = [(i["name"], i["type"], i.get("shape") == 7) for i in node["inputs"]]
        if sockets != layout.sockets:
            problems.append(f"{where}: inputs {sockets} != {layout.sockets}")
        outputs = [(o["name"], o["type"]) for o in node["outputs"]]
        if outputs != layout.outputs[: len(outputs)]:  # a newer host may add outputs (0.33.0's SaveVideo)
            problems.append(f"{where}: outputs {outputs} != {layout.outputs}")
        for slot, entry in enumerate(node["inputs"]):
            if entry["link"] is not None:
                row = links[entry["link"]]
                origin = nodes[row[1]]
                if (
                    row[3:5] != [node["id"], slot]
                    or row[5] != entry["type"]
                    or origin["outputs"][row[2]]["type"] != entry["type"]
                    or entry["link"] not in (origin["outputs"][row[2]]["links"] or [])
                ):
                    problems.append(f"{where}: link {row} does not join {entry['name']} to its source")
        for slot, entry in enumerate(node["outputs"]):
            for link_id in entry["links"] or []:
                if links[link_id][1:3] != [node["id"], slot]:
                    problems.append(f"{where}: output {entry['name']} lists link {link_id} of another slot")
        expected_cnr = pack_folder_name() if node["type"] in pack_ids else "comfy-core"
        if node["properties"].get("cnr_id") != expected_cnr:
            problems.append(f"{where}: cnr_id {node['properties'].get('cnr_id')!r}, expected {expected_cnr!r}")
        if node["properties"].get("Node name for S&R") != node["type"]:
            problems.append(f"{where}: 'Node name for S&R' is not the node type")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_describe_the_same_graph(host, name):
    ui, api = load_ui(name), load_api_workflow(name)
    assert ui_to_api(host, ui) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    titles = {str(n["id"]): n.get("title") for n in ui["nodes"]}
    assert all(node["_meta"]["title"] == titles[node_id] for node_id, node in api.items())


@pytest.mark.parametrize("name", NAMES)
def test_loader_offers_the_download(host, name):
    ui = load_ui(name)
    (loader,) = [n for n in ui["nodes"] if n["type"] == "DynamiCrafterCheckpointLoader"]
    (hint,) = loader["properties"]["models"]
    variant = re.fullmatch(r"dynamicrafter_(.+)_v1\.ckpt", loader["widgets_values"][0]).group(1)
    assert hint == {
        "name": loader["widgets_values"][0],
        "directory": "checkpoints",
        "url": f"https://huggingface.co/{VARIANTS[variant].hf_repo}/resolve/main/model.ckpt",
    }
    assert hint["directory"] in host.folder_paths.folder_names_and_paths


@pytest.mark.parametrize("name", NAMES)
def test_note_explains_every_widget(host, name):
    assert_note_explains_every_widget(host, name)


# --------------------------------------------------------------------------------------------------
# The settings
# --------------------------------------------------------------------------------------------------

EXPECTED = {
    "image_to_video_256": ("256", "DynamiCrafterImageToVideo", None),
    "image_to_video_512": ("512", "DynamiCrafterImageToVideo", None),
    "image_to_video_1024": ("1024", "DynamiCrafterImageToVideo", None),
    "interpolation_512": ("512_interp", "DynamiCrafterInterpolation", "interpolate"),
    "loop_512": ("512_interp", "DynamiCrafterInterpolation", "loop"),
    "controlnet_512": ("512", "DynamiCrafterImageToVideo", None),
    "lora_512": ("512", "DynamiCrafterImageToVideo", None),
}


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_the_originals(name):
    variant_name, conditioning_type, mode = EXPECTED[name]
    variant = VARIANTS[variant_name]
    prompt = load_api_workflow(name)

    def single(class_type: str) -> dict[str, Any]:
        (node,) = [n["inputs"] for n in prompt.values() if n["class_type"] == class_type]
        return node

    assert single("DynamiCrafterCheckpointLoader")["ckpt_name"] == f"dynamicrafter_{variant_name}_v1.ckpt"
    conditioning = single(conditioning_type)
    assert (conditioning["width"], conditioning["height"]) == (variant.width, variant.height)
    assert conditioning["fs"] == variant.default_fs and conditioning["frames"] == 16
    sampler = single("DynamiCrafterSampler")
    assert (sampler["steps"], sampler["cfg"], sampler["eta"]) == (50, 7.5, 1.0)
    assert single("CreateVideo")["fps"] == 8.0
    if mode is not None:
        assert conditioning["mode"] == mode
        assert ("end_image" in conditioning) == (mode == "interpolate")
    if mode == "loop":
        trim = single("ImageFromBatch")
        assert (trim["batch_index"], trim["length"]) == (0, conditioning["frames"] - 1)
        (trim_id,) = [k for k, n in prompt.items() if n["class_type"] == "ImageFromBatch"]
        assert single("CreateVideo")["images"] == [trim_id, 0]


def test_controlnet_and_lora_sit_between_the_dynamicrafter_nodes():
    """The ControlNet turns the conditioning node's prompts into the sampler's; the LoRA feeds the sampler's model."""
    prompt = load_api_workflow("controlnet_512")
    ids = {n["class_type"]: k for k, n in prompt.items() if n["class_type"] != "LoadImage"}
    apply, sampler = prompt[ids["ControlNetApplyAdvanced"]]["inputs"], prompt[ids["DynamiCrafterSampler"]]["inputs"]
    conditioning = ids["DynamiCrafterImageToVideo"]
    assert (apply["positive"], apply["negative"]) == ([conditioning, 0], [conditioning, 1])
    assert apply["control_net"] == [ids["ControlNetLoader"], 0]
    assert (sampler["positive"], sampler["negative"]) == (
        [ids["ControlNetApplyAdvanced"], 0],
        [ids["ControlNetApplyAdvanced"], 1],
    )
    assert sampler["latent"] == [conditioning, 2]
    assert (apply["strength"], apply["start_percent"], apply["end_percent"]) == (1.0, 0.0, 1.0)
    (hint,) = [k for k, n in prompt.items() if n["class_type"] == "LoadImage" and [k, 0] == apply["image"]]
    assert prompt[hint]["inputs"]["image"] == "dynamicrafter_lines.png"

    prompt = load_api_workflow("lora_512")
    ids = {n["class_type"]: k for k, n in prompt.items()}
    lora = prompt[ids["LoraLoaderModelOnly"]]["inputs"]
    assert lora["model"] == [ids["DynamiCrafterCheckpointLoader"], 0] and lora["strength_model"] == 1.0
    assert prompt[ids["DynamiCrafterSampler"]]["inputs"]["model"] == [ids["LoraLoaderModelOnly"], 0]
