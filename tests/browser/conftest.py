"""ComfyUI's real frontend in a headless Chromium, driven by Playwright: the ``frontend`` fixture.

The browser is the distribution's Chromium (Debian's ``chromium`` package; ``scripts/lib/browser.sh``
installs it), never one that Playwright downloads: ``$DYNAMICRAFTER_CHROMIUM`` names the executable,
else ``/usr/lib/chromium/chromium`` (the binary behind Debian's ``/usr/bin/chromium`` launcher script,
which would add Google API keys, remote extensions and a broken /dev/shm check) or ``/usr/bin/chromium``.
It runs with every background service that would reach out to the network turned off, so the tests behave
the same on a closed network.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.comfy_server import WORKFLOW_INPUTS, ComfyServer, ServerSetup, comfyui_dir
from support.frontend_page import VIEWPORT, open_page
from support.host_checkpoints import write_host_checkpoint
from support.reference_data import manifest_path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TINY_CHECKPOINT = "dynamicrafter_tiny_512.ckpt"

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # runs as root in containers
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--password-store=basic",
    "--mute-audio",
]

SETTINGS = {
    # No first-run template dialog: the tests open the template browser themselves, from the menu.
    "Comfy.TutorialCompleted": True,
    # Every test's tab starts from the default graph, not from the workflows an earlier tab left open.
    "Comfy.Workflow.Persist": False,
    # Cleaner screenshots: no minimap over the lower right, no fps counter in the lower left.
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
}


def chromium_executable() -> Path:
    value = os.environ.get("DYNAMICRAFTER_CHROMIUM")
    candidates = [value] if value else list(CHROMIUM_CANDIDATES)
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail(
        f"no Chromium at {' or '.join(c for c in candidates if c)}: install Debian's chromium "
        "(`apt-get install chromium`, which scripts/test does as root) or set DYNAMICRAFTER_CHROMIUM "
        "to a Chromium executable"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServer]:
    """A headless ComfyUI with the pack installed, the example pictures and one tiny 512 checkpoint."""
    comfy_dir = comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        pytest.fail(
            f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR (scripts/test provisions .cache/comfyui-<release>)"
        )
    root = tmp_path_factory.mktemp("comfy-frontend")
    setup = ServerSetup.create(root)
    server = ComfyServer(comfy_dir, setup, root / "server.log")
    server.start()  # ComfyUI imports while the checkpoint is written
    try:
        write_host_checkpoint(setup.models / "checkpoints" / TINY_CHECKPOINT, "512", manifest_path("512"))
        for picture in WORKFLOW_INPUTS.glob("*.png"):
            shutil.copy(picture, setup.input_dir / picture.name)
        server.wait_ready()
        request = urllib.request.Request(
            server.url + "/api/settings",
            data=json.dumps(SETTINGS).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200
        yield server
    finally:
        server.stop()
        log.info("server log:\n%s", server.log_text())


@pytest.fixture(scope="session")
def tiny_checkpoint() -> str:
    """The file name of the tiny 512 checkpoint in the server's ``checkpoints`` folder."""
    return TINY_CHECKPOINT


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's), launched through Playwright."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        pytest.fail(
            "playwright is not installed: pip install playwright (requirements-test.txt); "
            "the browser itself is the system's Chromium, never `playwright install`"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def context(browser) -> Iterator[Any]:
    """One browser context (its HTTP cache makes the later page loads quick)."""
    context = browser.new_context(viewport=VIEWPORT)
    yield context
    context.close()


@pytest.fixture
def page(context, server: ComfyServer) -> Iterator[Any]:
    """A fresh tab, for the tests that change the graph beyond opening a template."""
    page = open_page(context, server)
    yield page
    page.close()
