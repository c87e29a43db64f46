"""The pack's subgraph blueprints in ComfyUI 0.33.0's frontend: served at ``/global_subgraphs``, found in the node
search as blueprints, dropped on the canvas as one node that shows the main widgets, opened to show the parts of
the workflow it folds, and turned into the same API prompt as that workflow (less its pictures and saving)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from support.comfy_server import ROOT, load_api_workflow
from support.frontend_page import SCREENSHOTS, screenshot

pytestmark = pytest.mark.host

SUBGRAPHS = ROOT / "subgraphs"
README_BLUEPRINT = "DynamiCrafter Image to Video (512)"
"""Pictured in the README (taken with DYNAMICRAFTER_SCREENSHOTS=1)."""
OUTSIDE = {"LoadImage", "SaveVideo"}
"""What a blueprint leaves to the user's graph: the pictures in, the saving out."""


def blueprints() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SUBGRAPHS.glob("*.json"))}


def test_the_server_lists_every_blueprint_of_the_pack(server):
    reply = server.get("/global_subgraphs")
    listed = reply.body
    assert reply.status == 200, reply
    ours = {e["name"] for e in listed.values() if e["info"]["node_pack"].endswith(server.setup.pack_name)}
    assert ours == set(blueprints()) and len(ours) >= 4, listed


@pytest.mark.parametrize("name", list(blueprints()))
def test_blueprint_is_found_dropped_and_opened(page, server, name):
    definition = blueprints()[name]["definitions"]["subgraphs"][0]
    page.evaluate("() => app.graph.clear()")  # an empty canvas: nothing lies over the node
    page.evaluate("() => app.extensionManager.command.execute('Workspace.SearchBox.Toggle')")  # a double click
    search = page.get_by_placeholder("Add a node...")
    search.fill(name)
    result = page.locator("#results-list [role=option]").filter(has_text=name).filter(has_text="Blueprint")
    result.first.click()
    page.wait_for_function(
        "(name) => app.graph._nodes.some(n => n.title === name && n.subgraph)", arg=name, timeout=30_000
    )
    folded = page.evaluate(
        """(name) => { const n = app.graph._nodes.find(n => n.title === name && n.subgraph);
        return {id: String(n.id), widgets: n.widgets.map(w => w.name), inputs: n.inputs.filter(i => !i.widget).map(i => i.type),
                outputs: n.outputs.map(o => o.type), inner: n.subgraph.nodes.map(m => [String(m.id), m.type])}; }""",
        name,
    )
    assert set(folded["inputs"]) == {"IMAGE"} and folded["outputs"] == ["VIDEO"], folded
    shown = [widget for _, widget in blueprints()[name]["nodes"][0]["properties"]["proxyWidgets"]]
    assert {"ckpt_name", "text", "seed", "steps"} <= set(shown) <= set(folded["widgets"]), folded

    assert sorted(folded["inner"]) == sorted([str(n["id"]), n["type"]] for n in definition["nodes"])
    if name == README_BLUEPRINT and SCREENSHOTS:
        page.evaluate("(name) => app.canvas.centerOnNode(app.graph._nodes.find(n => n.title === name))", name)
        page.wait_for_timeout(1000)
        screenshot(page, "blueprint_folded")
    shipped = load_api_workflow(definition["extra"]["workflow"])  # the workflow it folds
    assert {k: v["class_type"] for k, v in shipped.items() if v["class_type"] not in OUTSIDE} == dict(folded["inner"])

    # The frontend flattens the subgraph into the prompt: each inner node with the shipped workflow's values.
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    for inner_id, _ in folded["inner"]:
        flattened = prompt[f"{folded['id']}:{inner_id}"]
        values = {k: v for k, v in flattened["inputs"].items() if not isinstance(v, list)}
        expected = {k: v for k, v in shipped[inner_id]["inputs"].items() if not isinstance(v, list)}
        assert {k: values[k] for k in expected} == expected, f"{name}: node {inner_id}"

    # Open it as a user does, with the icon at the right end of its title bar (drawn on the canvas: tried at a few
    # points of that end until the canvas shows the parts).
    where = """(name) => { const n = app.graph._nodes.find(n => n.title === name), ds = app.canvas.ds;
        const r = app.canvas.canvas.getBoundingClientRect(), b = n.boundingRect;
        return [(b[0] + b[2] + ds.offset[0]) * ds.scale + r.left, (b[1] + ds.offset[1]) * ds.scale + r.top,
                LiteGraph.NODE_TITLE_HEIGHT * ds.scale]; }"""
    opened = "(count) => app.canvas.graph !== app.graph && app.canvas.graph._nodes.length === count"
    page.evaluate("() => app.canvas.deselectAll()")
    deadline = time.monotonic() + 30
    while not page.evaluate(opened, len(folded["inner"])):  # the canvas may still be settling: place anew
        assert time.monotonic() < deadline, f"{name}: its title icon did not open it"
        right, top, title = page.evaluate(where, name)
        for dx in (30, 22, 38, 14):
            page.mouse.click(right - dx, top + title * 0.75)
            try:
                page.wait_for_function(opened, arg=len(folded["inner"]), timeout=500)
                break
            except PlaywrightTimeout:
                continue
    page.get_by_text(name).first.wait_for()  # the breadcrumb names the blueprint
    if name == README_BLUEPRINT and SCREENSHOTS:
        page.get_by_role("button", name="Fit View (.)").click()
        page.wait_for_timeout(1000)  # the canvas redraws on the next frames
        screenshot(page, "blueprint_opened")
