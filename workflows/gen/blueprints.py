"""Subgraph blueprints: a shipped workflow folded into one node (ComfyUI 0.33.0 and newer).

ComfyUI serves every ``custom_nodes/<pack>/subgraphs/*.json`` at ``/global_subgraphs``, and the frontend lists
each as a node in its library: the user drops one node for the whole pipeline and opens it to see the parts.
A blueprint is made from the generated graph-editor file of a workflow: its pictures (``LoadImage``) become the
subgraph's inputs, its ``SaveVideo`` the VIDEO output, the note goes, and the widgets a user changes most
(model file, prompt, seed, steps, motion) are shown on the folded node (``proxyWidgets``).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

from .layout import node_type

INPUT_NODE, OUTPUT_NODE = -10, -20
"""The ids LiteGraph gives a subgraph's input and output nodes."""
SHOWN_WIDGETS = (
    ("ckpt_name", None),
    ("text", "Prompt"),
    ("seed", None),
    ("steps", None),
    ("cfg", None),
    ("fs", None),
)
"""(widget, title prefix of its node) shown on the folded node, in this order: the model file, the positive
prompt, the sampler's seed, steps and CFG, the motion (fs)."""


@dataclass(frozen=True)
class Blueprint:
    name: str
    """File name and title in the node library."""
    workflow: str
    """The shipped workflow it folds."""
    description: str


BLUEPRINTS = (
    Blueprint(
        "DynamiCrafter Image to Video (512)",
        "image_to_video_512",
        "Animates a picture into a 16-frame 512x320 video guided by a prompt (DynamiCrafter 512).",
    ),
    Blueprint(
        "DynamiCrafter Interpolation (512)",
        "interpolation_512",
        "Fills the 16 frames between a start and an end picture (DynamiCrafter 512_interp).",
    ),
    Blueprint(
        "DynamiCrafter Loop (512)",
        "loop_512",
        "Makes a seamless 15-frame loop that starts and ends on the picture (DynamiCrafter 512_interp).",
    ),
    Blueprint(
        "ToonCrafter Interpolation (512)",
        "tooncrafter_512",
        "Fills the frames between two cartoon keyframes with ToonCrafter's model and decoder.",
    ),
)


def _link(row: list[Any]) -> dict[str, Any]:
    link_id, origin, origin_slot, target, target_slot, kind = row
    return {
        "id": link_id,
        "origin_id": origin,
        "origin_slot": origin_slot,
        "target_id": target,
        "target_slot": target_slot,
        "type": kind,
    }


def _shown_widgets(nodes: list[dict[str, Any]]) -> list[list[str]]:
    shown = []
    for widget, title in SHOWN_WIDGETS:
        for node in nodes:
            if widget in node_type(node["type"]).widgets and (title is None or node.get("title", "").startswith(title)):
                shown.append([str(node["id"]), widget])
                break
    return shown


def blueprint_file(blueprint: Blueprint, ui: dict[str, Any], cnr_id: str) -> dict[str, Any]:
    """The subgraph blueprint of ``blueprint`` from its workflow's graph-editor form ``ui``."""
    ui = copy.deepcopy(ui)
    pictures = [n for n in ui["nodes"] if n["type"] == "LoadImage"]
    (save,) = [n for n in ui["nodes"] if n["type"] == "SaveVideo"]
    inner = [n for n in ui["nodes"] if n["type"] not in ("MarkdownNote", "LoadImage", "SaveVideo")]
    slot_of_picture = {picture["id"]: slot for slot, picture in enumerate(pictures)}
    links, inputs, outputs = [], [], []
    for row in ui["links"]:
        link = _link(row)
        if link["origin_id"] in slot_of_picture:
            if link["origin_slot"] != 0:
                continue  # a picture's MASK: not part of the pipeline
            link.update(origin_id=INPUT_NODE, origin_slot=slot_of_picture[link["origin_id"]])
        elif link["target_id"] == save["id"]:
            link.update(target_id=OUTPUT_NODE, target_slot=0)
        links.append(link)
    for picture, slot in slot_of_picture.items():
        title = next(n.get("title", "image") for n in pictures if n["id"] == picture)
        link_ids = [link["id"] for link in links if link["origin_id"] == INPUT_NODE and link["origin_slot"] == slot]
        inputs.append(_socket(blueprint, f"image_{slot}", "IMAGE", link_ids, title, (0, 20 * slot)))
    output_links = [link["id"] for link in links if link["target_id"] == OUTPUT_NODE]
    outputs.append(_socket(blueprint, "VIDEO", "VIDEO", output_links, "video", (0, 0)))
    subgraph_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cnr_id}/subgraphs/{blueprint.name}"))
    instance = {
        "id": max(n["id"] for n in ui["nodes"]) + 1,
        "type": subgraph_id,
        "pos": [0, 0],
        "size": [400, 0],
        "flags": {},
        "order": 0,
        "mode": 0,
        "inputs": [{"label": i["label"], "name": i["name"], "type": "IMAGE", "link": None} for i in inputs],
        "outputs": [{"name": "VIDEO", "type": "VIDEO", "links": []}],
        "title": blueprint.name,
        "properties": {"proxyWidgets": _shown_widgets(inner), "cnr_id": cnr_id},
        "widgets_values": [],
    }
    xs = [n["pos"][0] for n in inner]
    ys = [n["pos"][1] for n in inner]
    definition = {
        "id": subgraph_id,
        "version": 1,
        "state": {
            "lastGroupId": 0,
            "lastNodeId": instance["id"],
            "lastLinkId": max(link["id"] for link in links),
            "lastRerouteId": 0,
        },
        "revision": 0,
        "config": {},
        "name": blueprint.name,
        "category": "DynamiCrafter",
        "description": blueprint.description,
        "inputNode": {"id": INPUT_NODE, "bounding": [min(xs) - 300, min(ys), 120, 40 + 20 * len(inputs)]},
        "outputNode": {"id": OUTPUT_NODE, "bounding": [max(xs) + 450, min(ys), 120, 60]},
        "inputs": inputs,
        "outputs": outputs,
        "widgets": [],
        "nodes": inner,
        "groups": [],
        "links": links,
        "extra": {"workflow": blueprint.workflow},
    }
    return {
        "revision": 0,
        "last_node_id": instance["id"],
        "last_link_id": 0,
        "nodes": [instance],
        "links": [],
        "version": 0.4,
        "definitions": {"subgraphs": [definition]},
        "extra": {},
    }


def _socket(
    blueprint: Blueprint, name: str, kind: str, link_ids: list[int], label: str, pos: tuple[int, int]
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{blueprint.name}/{name}")),
        "name": name,
        "type": kind,
        "linkIds": link_ids,
        "localized_name": name,
        "label": label,
        "pos": list(pos),
    }
