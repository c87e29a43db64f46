"""The shipped workflows in ComfyUI's real frontend: a headless Chromium on a real server with the pack installed.

Every workflow is opened the way a user opens it: *Browse Templates* (the frontend's command, which its menu
and sidebar run), the pack's entry in the dialog's list, the workflow's card. Then: no "Some Nodes Are Missing" dialog, every node's type
registered with LiteGraph and none drawn as a missing (red) node, the graph the file holds, the frontend's
own API conversion (``app.graphToPrompt``) equal to the shipped ``workflows/api`` file, and the one dialog
expected on a fresh install, *Missing Models*, naming the files the workflow's nodes declare. A screenshot
of each graph goes to ``docs/images/workflow_<name>.png``.

Last, the 512 image-to-video workflow is pointed at a tiny checkpoint and a tiny size through the page's
``app.graph``, queued with the Run button, and followed until its Save Video node plays the MP4 the server
wrote (``docs/images/workflow_image_to_video_512_result.png``; the tiny model has random weights, so the
video is noise). A check of the checks loads a copy of a workflow with an unknown node type and expects
the same helpers to report it.

The page is driven through what the frontend keeps stable across releases (1.27 with ComfyUI 0.3.64, 1.35
with 0.8.0): its extension API (``app.extensionManager.command.execute``, ``app.graph``, ``app.api``), the
template cards' ``data-testid``, and accessible roles and names: the pack's entry in the template dialog's
list is an ``option`` (1.27) or a ``button`` (1.35) named after the pack, each card's title a ``heading``,
and the Run button the button named ``Run``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.comfy_server import ROOT, WORKFLOWS, ComfyServer, load_api_workflow, workflow_names

pytestmark = pytest.mark.host

log = logging.getLogger(__name__)

# The README's pictures: taken only when asked (DYNAMICRAFTER_SCREENSHOTS=1), into docs/images, so that a test
# run leaves the checkout clean and spends no time encoding pictures nobody looks at.
SCREENSHOTS = os.environ.get("DYNAMICRAFTER_SCREENSHOTS") == "1"
IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 2400, "height": 1350}
RUN_WORKFLOW = "image_to_video_512"
RUN_WIDTH, RUN_HEIGHT, RUN_STEPS = 128, 64, 1
MISSING_NODES_TITLE = re.compile("Some Nodes Are Missing|This workflow has missing nodes")
"""The missing-nodes dialog's title: frontend 1.27 (ComfyUI 0.3.64), 1.35 (0.8.0)."""
MISSING_MODELS_TITLE = "Missing Models"


def ui_workflow(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def declared_models(workflow: dict[str, Any]) -> list[str]:
    """``directory / name`` of every model file the workflow's nodes declare (``properties.models``)."""
    return sorted(
        {
            f"{m['directory']} / {m['name']}"
            for node in workflow["nodes"]
            for m in node.get("properties", {}).get("models", [])
        }
    )


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def context(browser) -> Iterator[Any]:
    """One browser context (its HTTP cache makes the later page loads quick)."""
    context = browser.new_context(viewport=VIEWPORT)
    yield context
    context.close()


def _open_page(context, server: ComfyServer) -> Any:
    """A new tab on the server's frontend: one workflow tab, the default graph (the server's settings turn
    off restoring the last session); uncaught page errors are kept in ``page.errors``."""
    started = time.monotonic()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and log.info("console: %s", message.text))
    page.goto(server.url + "/")
    page.wait_for_function(
        "() => window.app?.graph && window.app.canvas && window.LiteGraph"
        " && 'DynamiCrafterSampler' in LiteGraph.registered_node_types",
        timeout=120_000,
    )
    page.wait_for_function("() => typeof window.app?.extensionManager?.command?.execute === 'function'")
    log.info(
        "frontend ready in %.1f s (uncaught page errors while loading: %s)", time.monotonic() - started, page.errors
    )
    return page


@pytest.fixture(scope="module")
def templates_page(context, server: ComfyServer) -> Iterator[Any]:
    """One tab for the template-browser tests: each opens its workflow from the dialog as a user would, one
    after another in the same frontend (each test leaves no dialog open; each checks its own graph)."""
    page = _open_page(context, server)
    yield page
    page.close()


@pytest.fixture
def page(context, server: ComfyServer) -> Iterator[Any]:
    """A fresh tab, for the tests that change the graph beyond opening a template."""
    page = _open_page(context, server)
    yield page
    page.close()


def visible_dialogs(page) -> list[str]:
    return [d.inner_text() for d in page.get_by_role("dialog").all() if d.is_visible()]


def close_dialog(page, title: str | re.Pattern) -> None:
    """Closes the dialog showing ``title`` with its Close button (the header's close icon, else Escape, where it
    has no button of that name)."""
    dialog = page.get_by_role("dialog").filter(has_text=title)
    for close in (dialog.get_by_role("button", name="Close"), dialog.locator(".p-dialog-close-button")):
        if close.count():
            close.first.click()
            break
    else:
        page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def open_template_browser(page, pack: str):
    """Browse Templates, then the pack's entry: the dialog, showing the pack's cards."""
    page.evaluate("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    entry = page.get_by_role("option", name=pack, exact=True).or_(page.get_by_role("button", name=pack, exact=True))
    dialog = page.get_by_role("dialog").filter(has=entry)
    dialog.get_by_role("option", name=pack, exact=True).or_(dialog.get_by_role("button", name=pack, exact=True)).click()
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
        const nodes = app.graph._nodes.map(n => [n.id, n.type]).sort((a, b) => a[0] - b[0]);
        return JSON.stringify(nodes) === JSON.stringify(expected);
    }""",
        arg=expected,
        timeout=30_000,
    )
    page.mouse.move(VIEWPORT["width"] - 5, VIEWPORT["height"] - 5)  # no hover highlight in the screenshots


def missing_node_problems(page) -> list[str]:
    """What a user would see as missing nodes: the dialog, and nodes whose type LiteGraph does not know
    (the frontend draws those red, ``has_errors``)."""
    problems = [f"dialog: {text[:300]!r}" for text in visible_dialogs(page) if MISSING_NODES_TITLE.search(text)]
    if page.locator(".comfy-missing-nodes").count():
        problems.append("the missing-nodes list is on the page")
    problems += page.evaluate("""() => app.graph._nodes.flatMap(n => [
        ...(n.type in LiteGraph.registered_node_types ? [] : [`node ${n.id}: type ${n.type} is not registered`]),
        ...(n.has_errors ? [`node ${n.id} (${n.type}) is drawn as an error`] : []),
    ])""")
    return problems


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


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"{name}.png"))


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
    """The checks below can fail: a workflow with a node type nobody registered trips every one of them."""
    doctored = ui_workflow(RUN_WORKFLOW)
    (sampler,) = [node for node in doctored["nodes"] if node["type"] == "DynamiCrafterSampler"]
    sampler["type"] = "DynamiCrafterNoSuchNode"
    page.evaluate("(wf) => app.loadGraphData(wf, true, true, 'missing_node_check')", doctored)
    page.get_by_role("dialog").filter(has_text=MISSING_NODES_TITLE).wait_for()
    problems = missing_node_problems(page)
    assert any(MISSING_NODES_TITLE.search(p) for p in problems), problems
    assert f"node {sampler['id']}: type DynamiCrafterNoSuchNode is not registered" in problems, problems
    assert f"node {sampler['id']} (DynamiCrafterNoSuchNode) is drawn as an error" in problems, problems
    for title in (MISSING_MODELS_TITLE, MISSING_NODES_TITLE):
        if any(re.search(title, text) for text in visible_dialogs(page)):
            close_dialog(page, title)
    assert not visible_dialogs(page)


@pytest.mark.parametrize("name", workflow_names())
def test_workflow_opens_from_the_template_browser(templates_page, server, name):
    page = templates_page
    errors_before = len(page.errors)
    open_from_template_browser(page, server.setup.pack_name, name)

    # A fresh install lacks the DynamiCrafter files: the frontend names the ones the nodes declare.
    models = declared_models(ui_workflow(name))
    assert models, f"{name}: no node declares its model file (properties.models)"
    missing_models = page.get_by_role("dialog").filter(has_text=MISSING_MODELS_TITLE)
    missing_models.wait_for()
    problems = missing_node_problems(page)
    text = missing_models.inner_text()
    for model in models:
        assert model in text, f"{model} not in the Missing Models dialog: {text}"
    close_dialog(page, MISSING_MODELS_TITLE)

    assert not problems, f"{name}: {problems}"
    assert not visible_dialogs(page), visible_dialogs(page)
    assert page.evaluate("async () => (await app.graphToPrompt()).output") == load_api_workflow(name), (
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
    close_dialog(page, MISSING_MODELS_TITLE)
    changes = [
        ["DynamiCrafterCheckpointLoader", "ckpt_name", tiny_checkpoint],
        ["DynamiCrafterImageToVideo", "width", RUN_WIDTH],
        ["DynamiCrafterImageToVideo", "height", RUN_HEIGHT],
        ["DynamiCrafterSampler", "steps", RUN_STEPS],
    ]
    assert page.evaluate(SET_WIDGETS, changes) == changes
    page.evaluate(FOLLOW_PROMPTS)

    started = time.monotonic()
    page.get_by_role("button", name="Run", exact=True).click()
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
