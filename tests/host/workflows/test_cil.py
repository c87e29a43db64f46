"""The CIL image-to-video workflow (``cil_image_to_video_512``) in the real host: the generic checks of
``test_workflows.py`` (validation, the frontend's widget layout, UI and API agreement, a note line for every widget)
and a run end to end on a tiny checkpoint at 128x64, 1 step, with statistics of that size written by the test;
the analytic start changes the video against the same graph without it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
import torch

from support import workflow_checks as W
from support import workflow_runs as NEW
from support.comfy_server import WORKFLOW_INPUTS, WORKFLOWS, load_api_workflow, workflow_names
from support.host_checkpoints import write_host_checkpoint
from support.reference_data import manifest_path

HERE = Path(__file__).resolve().parent

NAME = "cil_image_to_video_512"
WIDTH, HEIGHT, FRAMES = NEW.WIDTH, NEW.HEIGHT, 16


@pytest.fixture(scope="module")
def host(comfy_host, tmp_path_factory):
    """The tiny 512 checkpoint under the workflow's file name, statistics at the tiny size, the pictures."""
    comfy_host.load_builtin_extras()
    folder = tmp_path_factory.mktemp("cil-workflow-models")
    api = load_api_workflow(NAME)
    (ckpt_name,) = [n["inputs"]["ckpt_name"] for n in api.values() if "ckpt_name" in n["inputs"]]
    (stats_name,) = [n["inputs"]["statistics"] for n in api.values() if "statistics" in n["inputs"]]
    (folder / "checkpoints").mkdir()
    write_host_checkpoint(folder / "checkpoints" / ckpt_name, "512", manifest_path("512"), "ckpt")
    comfy_host.folder_paths.add_model_folder_path("checkpoints", str(folder / "checkpoints"))
    stats = folder / "dynamicrafter_init_noise"
    stats.mkdir()
    generator = torch.Generator().manual_seed(5)
    mean = torch.randn(1, 4, FRAMES, HEIGHT // 8, WIDTH // 8, generator=generator)
    torch.save({"Expectation_X0": mean, "Tr_Cov_d": torch.tensor(0.5)}, stats / stats_name)
    comfy_host.folder_paths.add_model_folder_path("dynamicrafter_init_noise", str(stats))
    for picture in WORKFLOW_INPUTS.glob("*.png"):
        target = Path(comfy_host.folder_paths.get_input_directory()) / picture.name
        target.write_bytes(picture.read_bytes())
    return comfy_host


def tiny() -> dict:
    prompt = load_api_workflow(NAME)
    for node in prompt.values():
        if node["class_type"] == "DynamiCrafterImageToVideo":
            node["inputs"].update(width=WIDTH, height=HEIGHT)
        if node["class_type"] == "DynamiCrafterSampler":
            node["inputs"]["steps"] = 1
    return prompt


def test_the_workflow_is_shipped_with_its_thumbnail():
    assert NAME in workflow_names() and NAME in W.CIL_NAMES
    assert (WORKFLOWS / f"{NAME}.jpg").is_file()
    ui = W.load_ui(NAME)
    types = [n["type"] for n in ui["nodes"]]
    assert "DynamiCrafterAnalyticInit" in types and "DynamiCrafterSampler" in types


def test_api_workflow_validates(host):
    valid, error, outputs, node_errors = asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, tiny(), None))
    assert valid, f"{error} {node_errors}"


def test_validation_refuses_a_start_step_out_of_range(host):
    prompt = tiny()
    NEW.of_type(prompt, "DynamiCrafterAnalyticInit")["M"] = 1001
    valid, _, _, node_errors = asyncio.run(host.execution.validate_prompt(uuid.uuid4().hex, prompt, None))
    assert not valid and "M" in str(node_errors)


def test_ui_and_api_describe_the_same_graph(host):
    ui, api = W.load_ui(NAME), load_api_workflow(NAME)
    assert W.ui_to_api(host, ui) == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_ui_widgets_fit_the_node_definitions(host):
    problems = []
    for node in W.load_ui(NAME)["nodes"]:
        if node["type"] in W.FRONTEND_ONLY:
            continue
        layout = W.frontend_layout(W.node_info(host, node["type"]))
        assert layout.accepts(len(node["widgets_values"])), node["type"]
        for (widget, kind, options), value in zip(layout.widgets, node["widgets_values"]):
            if (node["type"], widget) == ("DynamiCrafterAnalyticInit", "statistics"):  # the user's file
                problems.append(None if isinstance(value, str) and value else f"{widget}: {value!r}")
            else:
                problems.append(W.check_value(node["type"], widget, kind, options, value))
        sockets = [(i["name"], i["type"], i.get("shape") == 7) for i in node["inputs"]]
        assert sockets == layout.sockets, node["type"]
    assert [p for p in problems if p] == []


def test_note_explains_every_widget_and_where_the_files_go(host):
    ui = W.load_ui(NAME)
    (note,) = [n["widgets_values"][0] for n in ui["nodes"] if n["type"] in W.FRONTEND_ONLY]
    assert "models/dynamicrafter_init_noise" in note and "models/checkpoints" in note
    for node in ui["nodes"]:
        if node["type"] in W.FRONTEND_ONLY:
            continue
        widgets = W.frontend_layout(W.node_info(host, node["type"])).widgets[: len(node["widgets_values"])]
        for widget, _, _ in widgets:  # (a newer host's optional widgets the file leaves out keep their defaults)
            label = {W.CONTROL: "control after generate"}.get(widget, widget)
            assert re.search(rf"^- \*\*{re.escape(label)}\*\*.*: \S", note, re.MULTILINE), (node["title"], label)


def test_the_workflow_runs_and_the_analytic_start_matters(host):
    prompt = tiny()
    (sampler,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterSampler"]
    (save,) = [k for k, n in prompt.items() if n["class_type"] == "SaveVideo"]
    run = NEW.run_timed(host, prompt, outputs=[sampler, save])
    facts = NEW.video_facts(NEW.saved_video(host, run))
    assert facts == {"frames": FRAMES, "size": (WIDTH, HEIGHT), "fps": 8.0, "audio": None}
    analytic = run.output(sampler)["samples"]
    del prompt[sampler]["inputs"]["init_noise"]
    plain = host.run_prompt(prompt, outputs=[sampler]).output(sampler)["samples"]
    assert analytic.isfinite().all() and (analytic - plain).abs().max() > 1e-3
