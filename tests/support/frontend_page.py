"""A tab on the real frontend of a test server, ready for the browser tests to drive."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from support.comfy_server import ROOT, ComfyServer

log = logging.getLogger(__name__)

VIEWPORT = {"width": 2400, "height": 1350}


def open_page(context, server: ComfyServer) -> Any:
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


# The README's pictures: taken only when asked (DYNAMICRAFTER_SCREENSHOTS=1), into docs/images, so that a test
# run leaves the checkout clean and spends no time encoding pictures nobody looks at.
SCREENSHOTS = os.environ.get("DYNAMICRAFTER_SCREENSHOTS") == "1"
IMAGES = ROOT / "docs" / "images"


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"{name}.png"))
