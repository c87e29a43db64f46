"""A workflow in ComfyUI's two formats: the graph editor's (LiteGraph, "UI") and the API's ("prompt")."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from .graph import NOTE, NOTE_COLOR, NOTE_TYPE, Node, Workflow, is_stored
from .layout import UPLOAD, node_type

FRONTEND_VERSION = "1.27.10"  # the frontend of the pinned ComfyUI (comfyui-frontend-package)
CORE_VERSION = "0.3.64"  # the ComfyUI release the workflows are checked against
CORE_CNR_ID = "comfy-core"


def ui_value(node: Node, name: str) -> Any:
    return "image" if name == UPLOAD else node.value(name)


def _link_table(workflow: Workflow) -> list[list[Any]]:
    """LiteGraph links ``[id, origin, origin slot, target, target slot, type]``, numbered by target."""
    table: list[list[Any]] = []
    by_id = {n.id: n for n in workflow.nodes}
    for node in workflow.nodes:
        sockets = node_type(node.type).sockets
        fed = [socket.name for socket in sockets if socket.name in node.links]
        slots = [slot for slot, socket in enumerate(sockets) if socket.name in node.links]
        slots += range(len(sockets), len(sockets) + len(node.linked_widgets()))
        for slot, name in zip(slots, fed + node.linked_widgets()):
            origin, origin_slot = node.links[name]
            out_type = node_type(by_id[origin].type).outputs[origin_slot][1]
            table.append([len(table) + 1, origin, origin_slot, node.id, slot, out_type])
    return table


def execution_order(workflow: Workflow) -> dict[int, int]:
    """Topological order (the frontend's ``order``): sources first, ties by node id; the note first."""
    pending = {n.id: {src for src, _ in n.links.values()} for n in workflow.nodes}
    order: dict[int, int] = {NOTE: 0}
    while pending:
        ready = sorted(i for i, deps in pending.items() if deps <= set(order))
        for node_id in ready:
            order[node_id] = len(order)
            del pending[node_id]
    return order


def _ui_node(node: Node, links: list[list[Any]], order: int, cnr_id: str) -> dict[str, Any]:
    spec = node_type(node.type)
    inputs = []
    for slot, socket in enumerate(spec.sockets):
        link = next((row[0] for row in links if row[3] == node.id and row[4] == slot), None)
        entry: dict[str, Any] = {"name": socket.name, "type": socket.type, "link": link}
        if socket.optional:
            entry["shape"] = 7
        inputs.append(entry)
    for slot, name in enumerate(node.linked_widgets(), start=len(spec.sockets)):
        row = next(row for row in links if row[3] == node.id and row[4] == slot)
        inputs.append({"name": name, "type": row[5], "widget": {"name": name}, "link": row[0]})
    outputs = []
    for slot, (name, out_type) in enumerate(spec.outputs):
        out_links = [row[0] for row in links if row[1] == node.id and row[2] == slot]
        outputs.append({"name": name, "type": out_type, "slot_index": slot, "links": out_links or None})
    properties: dict[str, Any] = {"cnr_id": cnr_id if spec.ours else CORE_CNR_ID}
    if not spec.ours:
        properties["ver"] = CORE_VERSION
    properties["Node name for S&R"] = node.type
    if node.models:
        properties["models"] = [dict(m) for m in node.models]
    entry = {
        "id": node.id,
        "type": node.type,
        "pos": list(node.pos),
        "size": list(node.size),
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": inputs,
        "outputs": outputs,
        "title": node.title,
        "properties": properties,
        "widgets_values": [ui_value(node, name) for name in spec.widgets],
    }
    if node.color:
        entry["color"], entry["bgcolor"] = node.color
    return entry


def ui_format(workflow: Workflow, cnr_id: str, note: Callable[[Workflow], str]) -> dict[str, Any]:
    links = _link_table(workflow)
    order = execution_order(workflow)
    nodes: list[dict[str, Any]] = [
        {
            "id": NOTE,
            "type": NOTE_TYPE,
            "pos": list(workflow.note_pos),
            "size": list(workflow.note_size),
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "title": "Read me",
            "properties": {},
            "widgets_values": [note(workflow)],
            "color": NOTE_COLOR[0],
            "bgcolor": NOTE_COLOR[1],
        }
    ]
    nodes += [_ui_node(node, links, order[node.id], cnr_id) for node in workflow.nodes]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cnr_id}/workflows/{workflow.name}")),
        "revision": 0,
        "last_node_id": max(n["id"] for n in nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [520, 80]}, "frontendVersion": FRONTEND_VERSION},
        "version": 0.4,
    }


def api_format(workflow: Workflow) -> dict[str, Any]:
    prompt: dict[str, Any] = {}
    for node in workflow.nodes:
        spec = node_type(node.type)
        inputs: dict[str, Any] = {}
        for socket in spec.sockets:
            if socket.name in node.links:
                origin, slot = node.links[socket.name]
                inputs[socket.name] = [str(origin), slot]
        for name in spec.widgets:
            if name in node.links:
                origin, slot = node.links[name]
                inputs[name] = [str(origin), slot]
            elif is_stored(name):
                inputs[name] = node.value(name)
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title}}
    return prompt
