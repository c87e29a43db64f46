"""What the workflow tests check a shipped workflow against: the frontend's view of a node definition (its
sockets and widgets in ``widgets_values`` order), a widget value's fit, the API prompt a UI graph stands for,
and the note that explains every widget; plus which workflows each test file covers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from typing import Any

from support.comfy_server import WORKFLOWS

FRONTEND_ONLY = {"Note", "MarkdownNote"}
NEWER_WIDGETS = {"LoraModelLoader": [("bypass", "BOOLEAN")]}
"""Widgets the shipped workflows carry that the oldest supported host (0.8.0) does not have yet (0.33.0's are
required): that host's frontend ignores the extra value, its server the extra input."""
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "COMFY_DYNAMICCOMBO_V3"}
"""Inputs the frontend draws as widgets; a V3 dynamic combo (0.33.0's SaveVideo codec) is a combo of its keys."""
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
CONTROL, UPLOAD = "control_after_generate", "upload"
FILE_WIDGETS = {
    ("DynamiCrafterCheckpointLoader", "ckpt_name"),
    ("LoadImage", "image"),
    ("ControlNetLoader", "control_net_name"),
    ("LoraLoaderModelOnly", "lora_name"),
    ("LoadVideo", "file"),
}
"""Combos listing the user's files: checked against the workflow's download hint, shipped pictures and notes."""
NEW_NAMES = [
    "keyframe_chain_512",
    "long_video_512",
    "photo_to_film",
    "story_to_film",
    "tooncrafter_512",
    "video_restyle_512",
    "pinned_first_frame_512",
    "image_guidance_512",
    "tooncrafter_sketch_512",
    "long_video_freenoise_512",
    "train_lora_512",
]
"""Checked by test_new_workflows.py with these same checks, extended to linked widgets; run there or (the sampler
controls) in test_control_workflows.py."""
CIL_NAMES = ["cil_image_to_video_512"]
CAMERA_NAMES = ["camera_control_256", "camera_control_512"]
"""The camera workflows load camera files of their own: tests/host/workflows/test_camera.py checks them."""
"""Checked (and run) by test_cil_workflow.py: its loader's file and the statistics are the user's to fetch."""


def load_generator():
    spec = importlib.util.spec_from_file_location("dynamicrafter_workflow_generator", WORKFLOWS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def load_ui(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def node_info(host, class_type: str) -> dict[str, Any]:
    """What GET /object_info says about a node (server.py's ``node_info``, the parts used here)."""
    cls = host.nodes.NODE_CLASS_MAPPINGS[class_type]
    if hasattr(cls, "GET_NODE_INFO_V1"):
        info = cls.GET_NODE_INFO_V1()
        return dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(info)
    inputs = cls.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
    }


@dataclasses.dataclass
class Layout:
    sockets: list[tuple[str, str, bool]]  # (name, type, optional), in slot order
    widgets: list[tuple[str, str, dict]]  # (name or CONTROL/UPLOAD, type, options), in widgets_values order
    outputs: list[tuple[str, str]]
    omittable: int = 0
    """Trailing optional widgets a stored workflow may leave out (inputs newer than the oldest supported host,
    e.g. 0.33.0's CreateVideo ``bit_depth``): the frontend gives them their defaults."""

    def accepts(self, count: int) -> bool:
        """Whether a node with ``count`` widget values fits this layout."""
        return len(self.widgets) - self.omittable <= count <= len(self.widgets)


def frontend_layout(info: dict[str, Any]) -> Layout:
    """Slots and widgets as the frontend builds them (``getOrderedInputSpecs`` and the widget constructors)."""
    specs: dict[str, tuple[Any, dict, bool]] = {}
    for category in ("required", "optional"):
        for name, spec in (info["input"].get(category) or {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs[name] = (spec[0], options, category == "optional")
    order = info.get("input_order") or {}
    names = [n for n in order.get("required", []) if n in specs and not specs[n][2]]
    names += [n for n in order.get("optional", []) if n in specs and specs[n][2]]
    names += [n for n in specs if n not in names]
    layout = Layout([], [], list(zip(info["output_name"], info["output"])))
    for name in names:
        kind, options, optional = specs[name]
        kind = "COMBO" if isinstance(kind, list) else kind
        if kind == "COMFY_DYNAMICCOMBO_V3":
            kind, options = "COMBO", {**options, "options": [o["key"] for o in options.get("options", [])]}
        if kind not in WIDGET_TYPES or options.get("forceInput"):
            layout.sockets.append((name, kind, optional))
            continue
        if kind == "COMBO" and isinstance(specs[name][0], list):
            options = {**options, "options": specs[name][0]}
        layout.widgets.append((name, kind, options))
        if options.get("control_after_generate") or (kind == "INT" and name in ("seed", "noise_seed")):
            layout.widgets.append((CONTROL, "COMBO", {"options": sorted(CONTROL_VALUES)}))
        if options.get("image_upload") or options.get("video_upload"):  # one upload button for both
            layout.widgets.append((UPLOAD, "UPLOAD", {}))
        layout.omittable = layout.omittable + 1 if optional else 0
    for name, kind in NEWER_WIDGETS.get(info.get("name", ""), []):
        if name not in specs:
            layout.widgets.append((name, kind, {}))
    return layout


def check_value(class_type: str, name: str, kind: str, options: dict, value: Any) -> str | None:
    """Why ``value`` does not fit the widget, or None."""
    if kind == "UPLOAD":
        return None if value == "image" else f"upload widget value {value!r}"
    if kind == "COMBO":
        if (class_type, name) in FILE_WIDGETS:
            return None if isinstance(value, str) and value else f"{name}: empty file name"
        return None if value in options.get("options", []) else f"{name}: {value!r} not in {options.get('options')}"
    if kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name}: {value!r} is not an integer"
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{name}: {value!r} is not a number"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{name}: {value!r} is not text"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}: {value!r} is not a boolean"
    if "min" in options and value < options["min"] or "max" in options and value > options["max"]:
        return f"{name}: {value} outside [{options.get('min')}, {options.get('max')}]"
    return None


def ui_to_api(host, ui: dict[str, Any]) -> dict[str, Any]:
    """The API prompt a UI graph stands for: the frontend's export, from the host's definitions."""
    links = {row[0]: row for row in ui["links"]}
    prompt: dict[str, Any] = {}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        layout = frontend_layout(node_info(host, node["type"]))
        inputs: dict[str, Any] = {}
        for entry in node["inputs"]:
            if entry.get("link") is not None:
                row = links[entry["link"]]
                inputs[entry["name"]] = [str(row[1]), row[2]]
        for (name, _, _), value in zip(layout.widgets, node["widgets_values"]):
            if name not in (CONTROL, UPLOAD):
                inputs[name] = value
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def assert_note_explains_every_widget(host, name: str) -> None:
    """The workflow's one note has a section per node with widgets, and a line per widget."""
    ui = load_ui(name)
    notes = [n for n in ui["nodes"] if n["type"] in FRONTEND_ONLY]
    assert len(notes) == 1, f"{name}: expected one note"
    text = notes[0]["widgets_values"][0]
    sections = {block.split("**", 2)[1]: block for block in text.split("\n\n") if block.startswith("**")}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        layout = frontend_layout(node_info(host, node["type"]))
        if not layout.widgets:
            continue
        assert node["title"] in sections, f"{name}: the note has no section for {node['title']!r}"
        for widget, _, _ in layout.widgets[: len(node["widgets_values"])]:  # newer optional ones keep defaults
            label = {CONTROL: "control after generate"}.get(widget, widget)
            assert re.search(rf"^- \*\*{re.escape(label)}\*\*.*: \S", sections[node["title"]], re.MULTILINE), (
                f"{name}: the note does not explain {label!r} of {node['title']!r}"
            )
