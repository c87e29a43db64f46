"""Every model file a shipped template loads is declared for the frontend's one-click download: its node's
``properties.models`` names the file, a Hugging Face URL and the models folder the loader reads, in the form
ComfyUI 0.33.0's frontend (1.48.7) offers to download (a ``https://huggingface.co/`` URL, a model file suffix).
The real frontend's offer is checked in ``tests/browser/test_frontend.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pth", ".pt")
"""What the frontend downloads (its ``isModelDownloadable``); also what a widget naming a model file ends with."""
FOLDER_OF = {
    "DynamiCrafterCheckpointLoader": "checkpoints",
    "DynamiCrafterToonCrafterLoader": "checkpoints",
    "ControlNetLoader": "controlnet",
    "DynamiCrafterAnalyticInit": "dynamicrafter_init_noise",
    "DynamiCrafterLoadCameraModel": "checkpoints",
}
NO_PUBLIC_SOURCE = {
    "dynamicrafter_512_lora.safetensors": "the user's own LoRA (the LoRA workflow's note says so)",
    "dynamicrafter_cil_512.ckpt": "GraceZhao's CIL repository's file name is not known offline; the note links it",
}


def _templates() -> list[Path]:
    return sorted(p for p in WORKFLOWS.glob("*.json"))


@pytest.mark.parametrize("path", _templates(), ids=lambda p: p.stem)
def test_every_model_file_is_declared_for_download(path: Path) -> None:
    workflow = json.loads(path.read_text(encoding="utf-8"))
    checked = 0
    for node in workflow["nodes"]:
        files = [v for v in node.get("widgets_values", []) if isinstance(v, str) and v.endswith(MODEL_SUFFIXES)]
        declared = {m["name"]: m for m in node.get("properties", {}).get("models", [])}
        for name in files:
            if name in NO_PUBLIC_SOURCE:
                continue
            assert name in declared, f"{path.stem}: {node['type']} loads {name} but does not declare it"
            model = declared[name]
            assert model["url"].startswith("https://huggingface.co/"), model
            assert model["url"].split("?")[0].endswith(MODEL_SUFFIXES), model
            assert model["directory"] == FOLDER_OF[node["type"]], model
            checked += 1
    loads_models = any(n["type"] in FOLDER_OF for n in workflow["nodes"])
    assert checked or not loads_models, f"{path.stem}: loads a model but declares none"
