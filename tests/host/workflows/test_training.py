"""The shipped train_lora_512 workflow runs end to end on a tiny checkpoint (a few steps, 128x64): the LoRA is
trained, saved by the stock Save LoRA and the train node, its loss graph drawn, and a video sampled with it."""

from __future__ import annotations

import importlib
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


class _Texts:
    """Stands in for the server's progress-text channel."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def send_progress_text(self, text: str, node_id: str, sid=None) -> None:
        self.texts.append((str(node_id), text))


def test_train_lora_workflow_runs(training_host, monkeypatch):
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
    texts = _Texts()
    monkeypatch.setattr(importlib.import_module("server").PromptServer, "instance", texts, raising=False)
    run = host.run_prompt(prompt)
    monkeypatch.undo()
    assert run.success, run.error()
    (train_id,) = [k for k, n in prompt.items() if n["class_type"] == "DynamiCrafterTrainLoRA"]
    shown = [text for node, text in texts.texts if node == train_id]
    assert [t.split("  ")[0] for t in shown] == ["step 1/3", "step 2/3", "step 3/3"] and "loss" in shown[-1]
    assert list(training_host.loras.rglob("wf_3_steps_*.safetensors"))
    saved = set(output.rglob("dynamicrafter_lora_3_steps_*.safetensors")) - before
    assert len(saved) == 1  # the stock Save LoRA's copy, in the output folder
    assert list(output.rglob("*.mp4"))
