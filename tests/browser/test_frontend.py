"""The shipped workflows in ComfyUI's real frontend: a headless Chromium on a real server with the pack installed.

Every workflow is opened the way a user opens it: *Browse Templates* (the frontend's command, which its menu
and sidebar run), the pack's entry in the dialog's list, the workflow's card. Then: no "Some Nodes Are Missing" dialog, every node's type
registered with LiteGraph and none drawn as a missing (red) node, the graph the file holds, the frontend's
own API conversion (``app.graphToPrompt``) equal to the shipped ``workflows/api`` file, and the one problem
expected on a fresh install: the error overview's *Missing Models*, naming the files the workflow's nodes
declare, each with its Download action (one click, as for the core templates). A screenshot of each graph
goes to ``docs/images/workflow_<name>.png``.

Last, the 512 image-to-video workflow is pointed at a tiny checkpoint and a tiny size through the page's
``app.graph``, queued with the Run button, and followed until its Save Video node plays the MP4 the server
wrote (``docs/images/workflow_image_to_video_512_result.png``; the tiny model has random weights, so the
video is noise). A check of the checks loads a copy of a workflow with an unknown node type and expects
the same helpers to report it.

The page is the frontend of the newest ComfyUI the suite runs (1.48.7 with 0.33.0), driven through what it
keeps stable: its extension API (``app.extensionManager.command.execute``, ``app.graph``, ``app.api``), the
``data-testid`` of the template cards and of the error overview's model rows, and accessible roles and names:
the pack's entry in the template dialog's list is a ``button`` named after the pack, each card's title a
``heading``, the Run button the button named ``Run``. Loading a workflow with problems shows a toast whose
*View details* opens the error overview (missing node packs, models, inputs) in the properties panel.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.comfy_server import WORKFLOWS, ComfyServer, load_api_workflow, workflow_names
from support.frontend_page import SCREENSHOTS, VIEWPORT, open_page, screenshot

pytestmark = pytest.mark.host

log = logging.getLogger(__name__)

RUN_WORKFLOW = "image_to_video_512"
RUN_WIDTH, RUN_HEIGHT, RUN_STEPS = 128, 64, 1
ERRORS_DETECTED = re.compile(r"Errors? detected")
"""The error overview's heading: "1 Error detected", "2 Errors detected"."""
MISSING_NODES = "Missing Node Packs"
"""The error overview's section for node types nobody registered."""


def ui_workflow(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def declared_models(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    """(directory, name) of every model file the workflow's nodes declare (``properties.models``)."""
    return sorted(
        {
            (m["directory"], m["name"])
            for node in workflow["nodes"]
            for m in node.get("properties", {}).get("models", [])
        }
    )


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates_page(context, server: ComfyServer) -> Iterator[Any]:
    """One tab for the template-browser tests: each opens its workflow from the dialog as a user would, one
    after another in the same frontend (each test leaves no dialog open; each checks its own graph)."""
    page = open_page(context, server)
    yield page
    page.close()


def visible_dialogs(page) -> list[str]:
    return [d.inner_text() for d in page.get_by_role("dialog").all() if d.is_visible()]


def open_template_browser(page, pack: str):
    """Browse Templates, then the pack's entry: the dialog, showing the pack's cards."""
    page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    entry = page.get_by_role("button", name=pack, exact=True)
    dialog = page.get_by_role("dialog").filter(has=entry)
    dialog.get_by_role("button", name=pack, exact=True).click()
    dialog.locator(f"[data-testid='template-workflow-{workflow_names()[0]}']").wait_for()  # the pack's cards
    return dialog


def open_from_template_browser(page, pack: str, name: str) -> None:
    """Opens workflow ``name`` from its card and waits until the canvas holds exactly the file's nodes."""
    dialog = open_template_browser(page, pack)
    dialog.get_by_role("heading", name=name, exact=True).click()
    dialog.wait_for(state="hidden")
    expected = sorted([node["id"], node["type"]] for node in ui_workflow(name)["nodes"])
    page.wait_for_function(
        """(expected) => {
        const nodes = app.graph._nodes.map(n => [Number(n.id), n.type]).sort((a, b) => a[0] - b[0]);
        return JSON.stringify(nodes) === JSON.stringify(expected);
    }""",
        arg=expected,
        timeout=30_000,
    )
    page.mouse.move(VIEWPORT["width"] - 5, VIEWPORT["height"] - 5)  # no hover highlight in the screenshots


def error_overview(page) -> Any:
    """The error overview: the properties panel's Errors tab (what the toast's *View details* opens after a
    workflow with problems loads)."""
    detected = page.get_by_text(ERRORS_DETECTED)
    tabs = page.get_by_role("navigation").filter(has_text="Global Settings")
    if not tabs.is_visible():
        page.get_by_role("button", name="Toggle properties panel").click()
    tabs.get_by_text("Errors", exact=True).click()
    detected.wait_for()
    return page.locator("div").filter(has=tabs).filter(has_text=ERRORS_DETECTED).last  # the innermost


def close_error_overview(page) -> None:
    page.get_by_role("button", name="Toggle properties panel").click()
    page.get_by_text(ERRORS_DETECTED).wait_for(state="hidden")


def missing_node_problems(page, overview: Any | None = None) -> list[str]:
    """What a user would see as missing nodes: the error overview's missing node packs, and nodes whose type
    LiteGraph does not know."""
    problems = []
    if overview is not None and overview.get_by_text(MISSING_NODES).count():
        problems.append(f"overview: {overview.inner_text()[:300]!r}")
    problems += page.evaluate("""() => app.graph._nodes.flatMap(n =>
        n.type in LiteGraph.registered_node_types ? [] : [`node ${n.id}: type ${n.type} is not registered`])""")
    return problems


NEWER_STOCK_INPUTS = {("CreateVideo", "bit_depth"): 8, ("SaveVideo", "codec.encoding"): "auto"}
"""Inputs of stock nodes newer than the oldest ComfyUI the pack supports (0.33.0's, optional): the shipped
workflows leave them out, so the frontend adds them at these defaults."""


def frontend_prompt(page) -> dict[str, Any]:
    """The frontend's API form of the graph (``app.graphToPrompt``), less the newer stock inputs it adds at their
    defaults (any other value stays, and fails the comparison with the shipped file)."""
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    for node in prompt.values():
        for (class_type, name), default in NEWER_STOCK_INPUTS.items():
            if node["class_type"] == class_type and node["inputs"].get(name, default) == default:
                node["inputs"].pop(name, None)
    return prompt


def offered_downloads(overview: Any) -> set[str]:
    """The missing model files the overview offers to download with one click (their Download buttons)."""
    buttons = overview.locator("[data-testid=missing-model-download]").all()
    return {button.get_attribute("aria-label").removeprefix("Download ") for button in buttons}


def frame_graph(page, settle: bool = True) -> float:
    """Fits every node into the canvas (the Fit View button would zoom out past the point where node text is
    drawn), redraws, and returns the scale; ``settle`` waits for the DOM widgets to follow."""
    scale = page.evaluate("""() => {
        const margin = 24, badge = 24;  // room around the nodes; the pack badge sits above the title bar
        const nodes = app.graph._nodes, title = LiteGraph.NODE_TITLE_HEIGHT;
        const x0 = Math.min(...nodes.map(n => n.pos[0])), x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0]));
        const y0 = Math.min(...nodes.map(n => n.pos[1] - title - badge));
        const y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
        const el = app.canvas.canvas, w = el.clientWidth - 2 * margin, h = el.clientHeight - 2 * margin;
        const scale = Math.min(w / (x1 - x0), h / (y1 - y0), 1);
        const ds = app.canvas.ds;
        ds.scale = scale;
        ds.offset = [(margin + (w - (x1 - x0) * scale) / 2) / scale - x0, (margin + (h - (y1 - y0) * scale) / 2) / scale - y0];
        app.canvas.setDirty(true, true);
        app.canvas.draw(true, true);
        return scale;
    }""")
    if settle:
        page.wait_for_timeout(1000)  # DOM widgets (the note, the video) follow the canvas on the next frames
    return scale


# --------------------------------------------------------------------------------------------------
# The template browser and every shipped workflow
# --------------------------------------------------------------------------------------------------


def test_template_browser_shows_the_packs_workflows(page, server):
    dialog = open_template_browser(page, server.setup.pack_name)
    cards = sorted(
        h.inner_text().strip() for h in dialog.locator("[data-testid^=template-workflow-]").get_by_role("heading").all()
    )
    assert cards == workflow_names()


def test_a_missing_node_is_detected(page, server):
    """The checks below can fail: a workflow with a node type nobody registered trips each of them."""
    doctored = ui_workflow(RUN_WORKFLOW)
    (sampler,) = [node for node in doctored["nodes"] if node["type"] == "DynamiCrafterSampler"]
    sampler["type"] = "DynamiCrafterNoSuchNode"
    page.evaluate("(wf) => app.loadGraphData(wf, true, true, 'missing_node_check')", doctored)
    problems = missing_node_problems(page, error_overview(page))
    assert any(MISSING_NODES in p for p in problems), problems
    assert f"node {sampler['id']}: type DynamiCrafterNoSuchNode is not registered" in problems, problems
    close_error_overview(page)
    assert not visible_dialogs(page)


@pytest.mark.parametrize("name", workflow_names())
def test_workflow_opens_from_the_template_browser(templates_page, server, name):
    page = templates_page
    errors_before = len(page.errors)
    open_from_template_browser(page, server.setup.pack_name, name)

    # A fresh install lacks the DynamiCrafter files: the frontend offers each one the nodes declare, to download.
    models = declared_models(ui_workflow(name))
    assert models, f"{name}: no node declares its model file (properties.models)"
    overview = error_overview(page)
    problems = missing_node_problems(page, overview)
    offered, text = offered_downloads(overview), overview.inner_text()
    for directory, file_name in models:
        assert file_name in offered, f"{file_name} is not offered for download: {text}"
        row = rf"{re.escape(file_name)}\n(\d+\n)?{re.escape(directory)}\n"  # (how many nodes load it)
        assert re.search(row, text), f"{file_name} would not go to models/{directory}: {text}"
    close_error_overview(page)

    assert not problems, f"{name}: {problems}"
    assert not visible_dialogs(page), visible_dialogs(page)
    assert frontend_prompt(page) == load_api_workflow(name), (
        f"{name}: the frontend's API form of the graph differs from workflows/api/{name}.json"
    )
    assert page.errors[errors_before:] == [], f"{name}: uncaught errors in the page"

    scale = frame_graph(page, settle=SCREENSHOTS)
    assert scale >= 0.6, f"zoomed out to {scale:.2f}: node text would not be drawn; widen VIEWPORT"
    screenshot(page, f"workflow_{name}")


# --------------------------------------------------------------------------------------------------
# A run from the browser
# --------------------------------------------------------------------------------------------------


SET_WIDGETS = """(changes) => {
    const done = [];
    for (const [type, name, value] of changes) {
        const nodes = app.graph._nodes.filter(n => n.type === type);
        if (nodes.length !== 1) throw new Error(`${nodes.length} nodes of type ${type}`);
        const widget = nodes[0].widgets.find(w => w.name === name);
        if (!widget) throw new Error(`${type} has no widget ${name}`);
        const options = widget.options?.values;
        if (Array.isArray(options) && !options.includes(value)) throw new Error(`${value} not in ${options}`);
        widget.value = value;
        widget.callback?.(value, app.canvas, nodes[0]);
        done.push([type, name, widget.value]);
    }
    app.graph.setDirtyCanvas(true, true);
    return done;
}"""

FOLLOW_PROMPTS = """() => {
    window.__outcomes = [];
    for (const kind of ['execution_success', 'execution_error', 'execution_interrupted'])
        app.api.addEventListener(kind, (event) => window.__outcomes.push([kind, event.detail]));
}"""


def test_image_to_video_runs_from_the_browser(page, server, tiny_checkpoint):
    open_from_template_browser(page, server.setup.pack_name, RUN_WORKFLOW)
    changes = [
        ["DynamiCrafterCheckpointLoader", "ckpt_name", tiny_checkpoint],
        ["DynamiCrafterImageToVideo", "width", RUN_WIDTH],
        ["DynamiCrafterImageToVideo", "height", RUN_HEIGHT],
        ["DynamiCrafterSampler", "steps", RUN_STEPS],
    ]
    assert page.evaluate(SET_WIDGETS, changes) == changes
    page.evaluate(FOLLOW_PROMPTS)

    started = time.monotonic()
    page.get_by_test_id("queue-button").click()  # the Run button
    # The outcome on the websocket, or a dialog (a refused prompt, an execution error) that ends the wait.
    page.wait_for_function(
        "() => window.__outcomes.length || document.querySelector('[role=dialog]')", timeout=600_000, polling=500
    )
    outcomes = page.evaluate("window.__outcomes")
    log.info("ran in %.0f s: %s", time.monotonic() - started, outcomes)
    assert [kind for kind, _ in outcomes] == ["execution_success"], (
        f"{outcomes} {visible_dialogs(page)}\n{server.log_tail()}"
    )
    assert not visible_dialogs(page), visible_dialogs(page)

    prompt_id = outcomes[0][1]["prompt_id"]
    (video_file,) = server.output_files(prompt_id)
    assert video_file.is_file() and video_file.suffix == ".mp4", video_file
    # The Save Video node shows the file the server wrote, and the browser decodes it.
    frame_graph(page)  # DOM widgets of nodes outside the view are hidden
    video = page.locator(f"video[src*='filename={video_file.name}']")
    video.wait_for(timeout=30_000)
    video.evaluate(
        "(v) => new Promise((ok, fail) => { if (v.readyState >= 2) ok();"
        " v.addEventListener('loadeddata', ok); v.addEventListener('error', () => fail(v.error?.message)); })"
    )
    in_node = page.evaluate(
        """(src) => {
        const node = app.graph._nodes.find(n => n.type === 'SaveVideo');
        return [...(node.widgets || [])].some(w => w.element?.querySelector?.(`video[src*="${src}"]`));
    }""",
        f"filename={video_file.name}",
    )
    assert in_node, "the video is not in the Save Video node's preview"
    screenshot(page, f"workflow_{RUN_WORKFLOW}_result")
