"""The workflow generator: the pack's example workflows, their pictures and the README's node list.

One module per job: ``host`` imports the pack with ComfyUI, ``layout`` reads the nodes' schemas, ``graph`` and
``builders`` describe nodes, the ``catalog`` package the workflows (``catalog.stock``: those with stock ControlNet and LoRA
nodes; ``catalog.controls``: those of the sampler controls), ``note`` / ``formats`` / ``pictures`` / ``videos`` /
``readme`` write them, ``files`` puts it all on disk. Run it with ``python workflows/generate.py [--check]``.
"""

from __future__ import annotations

from .catalog import workflows
from .files import json_files, main, picture_files, readme_text, stale_files, video_files, write_all
from .layout import node_types

__all__ = [
    "json_files",
    "main",
    "node_types",
    "picture_files",
    "readme_text",
    "stale_files",
    "video_files",
    "workflows",
    "write_all",
]
