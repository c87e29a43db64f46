"""The pack's node classes, imported with the pinned ComfyUI, so the generator reads the nodes' own schemas.

ComfyUI comes from ``$COMFYUI_DIR`` (default: the newest ``<repo>/.cache/comfyui-<release>`` the project's
scripts provisioned). The pack is imported as the package ``dynamicrafter_pack``, as the host tests do (its
folder name is not a Python name, and its ``nodes`` package would shadow ComfyUI's ``nodes`` module).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACK_PACKAGE = "dynamicrafter_pack"


def comfyui_dir() -> Path:
    """``$COMFYUI_DIR``, else the newest ComfyUI the project's scripts provisioned (dynamicrafter_batch/comfy_process.py)."""
    spec = importlib.util.spec_from_file_location("comfy_process", ROOT / "dynamicrafter_batch" / "comfy_process.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.comfyui_dir()


def import_pack() -> types.ModuleType:
    """The pack as ``dynamicrafter_pack`` (the one already imported, e.g. by the host tests, if any)."""
    if PACK_PACKAGE in sys.modules:
        return sys.modules[PACK_PACKAGE]
    comfy_dir = comfyui_dir()
    if not (comfy_dir / "comfy_api").is_dir():
        raise SystemExit(
            f"ComfyUI not found in {comfy_dir}: set COMFYUI_DIR to an extracted ComfyUI (the generator "
            "reads the nodes' schemas, which need ComfyUI importable)"
        )
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    from comfy.cli_args import args

    args.cpu = True  # before comfy.model_management picks a device at import
    return load_pack()


def load_pack() -> types.ModuleType:
    """The repository root imported once as the package ``dynamicrafter_pack`` (its relative imports work as
    in ComfyUI); ComfyUI must already be importable. The host tests load the pack through this too."""
    if PACK_PACKAGE in sys.modules:
        return sys.modules[PACK_PACKAGE]
    spec = importlib.util.spec_from_file_location(
        PACK_PACKAGE, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK_PACKAGE]
        raise
    return module


def pack_node_classes() -> list[type]:
    """The node classes the pack registers, in registration order."""
    pack = import_pack()
    extension = asyncio.run(pack.comfy_entrypoint())
    return list(asyncio.run(extension.get_node_list()))


def pack_node_infos() -> dict[str, dict[str, Any]]:
    """``node_id -> what GET /object_info says about it`` for every node of the pack."""
    infos = {}
    for node_class in pack_node_classes():
        info = node_class.GET_NODE_INFO_V1()
        infos[info["name"]] = info
    return infos


def variant_config() -> types.ModuleType:
    """The pack's ``dynamicrafter/config.py``: the variant table (``VARIANTS``, ``TOONCRAFTER``)."""
    return importlib.import_module(f"{import_pack().__name__}.dynamicrafter.config")


def variants() -> dict[str, Any]:
    """Every row of the variant table by name, ToonCrafter's included."""
    config = variant_config()
    return {**config.VARIANTS, config.TOONCRAFTER.name: config.TOONCRAFTER}
