"""The note each workflow opens with: what it does, the model file, the pictures, every widget in plain words."""

from __future__ import annotations

from typing import Any

from .formats import execution_order, ui_value
from .graph import Node, Workflow
from .layout import CONTROL, UPLOAD, node_type

INPUT_DIR = "inputs"
LOADER_TYPES = ("DynamiCrafterCheckpointLoader", "DynamiCrafterToonCrafterLoader")


def _widget_label(name: str) -> str:
    return {CONTROL: "control after generate", UPLOAD: "upload"}.get(name, name)


def _format_value(value: Any) -> str:
    if isinstance(value, str) and "\n" in value:  # one line of the note per widget
        return " / ".join(f"`{line}`" for line in value.splitlines())
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    return f"`{value}`"


def _explanation(node: Node, name: str) -> str:
    text = node.help.get(name) or node_type(node.type).help.get(name)
    if not text:
        raise ValueError(f"{node.type}: widget {name!r} has no tooltip; give the input one in the node's schema")
    return text


def note_text(workflow: Workflow) -> str:
    loader = next(n for n in workflow.nodes if n.type in LOADER_TYPES)
    download = loader.models[0] if workflow.model_note is None else {}
    lines = [
        f"# {workflow.title}",
        "",
        workflow.about,
        "",
        "## Model",
        workflow.model_note
        or (
            f"Put `{download['name']}` in `ComfyUI/models/{download['directory']}`: download `model.ckpt` from "
            f"[{download['url'].split('/resolve/')[0].removeprefix('https://huggingface.co/')}]({download['url']}) and "
            "rename it, or let the *DynamiCrafter Download Model* node fetch it. With Kijai's `*_fp16_pruned` files use "
            "*DynamiCrafter Load Model* with the stock *Load CLIP* (type `stable_diffusion`) and *Load CLIP Vision* "
            "(`CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors`) instead of the loader here."
        ),
        "",
        "## Pictures",
        (
            f"The example pictures are in this pack's `workflows/{INPUT_DIR}` folder: copy them into `ComfyUI/input`, "
            "or choose your own picture in the Load Image node."
        ),
        "",
    ]
    for section in workflow.extra_notes:
        lines += [section, ""]
    lines += ["## Settings, node by node"]
    order = execution_order(workflow)
    for node in sorted(workflow.nodes, key=lambda n: order[n.id]):
        layout = node_type(node.type).widgets
        if not layout:
            continue
        lines += ["", f"**{node.title}**"]
        for name in layout:
            value = "" if name == UPLOAD else f" ({_format_value(ui_value(node, name))})"
            lines.append(f"- **{_widget_label(name)}**{value}: {_explanation(node, name)}")
    return "\n".join(lines) + "\n"
