"""The list of node classes the pack registers; each feature module contributes its ``NODES``."""

from __future__ import annotations

import importlib

from comfy_api.latest import io

CATEGORY = "DynamiCrafter"

# Feature modules (relative to this package) that define a module-level NODES list.
_FEATURE_MODULES: tuple[str, ...] = (
    "loader",
    "conditioning",
    "sampler_nodes",
    "download.node",
    "director",
    "tooncrafter",
    "long_video",
    "controls",
    "init_noise",
    "sketch",
    "freenoise_nodes",
    "training",
    "camera",
)


def all_nodes() -> list[type[io.ComfyNode]]:
    nodes: list[type[io.ComfyNode]] = []
    for name in _FEATURE_MODULES:
        module = importlib.import_module(f".{name}", __package__)
        nodes.extend(module.NODES)
    return nodes
