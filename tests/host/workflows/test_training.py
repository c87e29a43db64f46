"""The shipped train_lora_512 workflow runs end to end on a tiny checkpoint (a few steps, 128x64): the LoRA is
trained, saved by the stock Save LoRA and the train node, its loss graph drawn, and a video sampled with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.comfy_server import WORKFLOW_INPUTS, load_api_workflow
from support.training_host import TINY_FILE, provision
from support.workflow_runs import of_type

WIDTH, HEIGHT = 128, 64


@pytest.fixture(scope="module")
def training_host(comfy_host, tmp_path_factory):
    return provision(comfy_host, tmp_path_factory)


def test_train_lora_workflow_runs(training_host):
    host = training_host.host
    for item in WORKFLOW_INPUTS.iterdir():
        shutil.copy(item, Path(host.folder_paths.get_input_directory()) / item.name)
    prompt = load_api_workflow("train_lora_512")
    of_type(prompt, "DynamiCrafterCheckpointLoader")["ckpt_name"] = TINY_FILE
    of_type(prompt, "DynamiCrafterTrainingClips").update(width=WIDTH, height=HEIGHT)
    of_type(prompt, "DynamiCrafterTrainLoRA").update(steps=3, training_dtype="fp32", lora_name="dynamicrafter/wf")
    of_type(prompt, "DynamiCrafterImageToVideo").update(width=WIDTH, height=HEIGHT)
    of_type(prompt, "DynamiCrafterSampler")["steps"] = 1
    output = Path(host.folder_paths.get_output_directory())
    before = set(output.rglob("*.safetensors"))
    run = host.run_prompt(prompt)
    assert run.success, run.error()
    assert list(training_host.loras.rglob("wf_3_steps_*.safetensors"))
    saved = set(output.rglob("dynamicrafter_lora_3_steps_*.safetensors")) - before
    assert len(saved) == 1  # the stock Save LoRA's copy, in the output folder
    assert list(output.rglob("*.mp4"))
