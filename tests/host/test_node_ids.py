"""No node id of the pack is one another DynamiCrafter pack registers (the host would silently replace one
pack's node with the other's); the ids come from tests/data/other_packs_node_ids.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.host

DATA = Path(__file__).resolve().parents[1] / "data" / "other_packs_node_ids.json"


def other_pack_ids() -> dict[str, str]:
    """node id -> the pack that registers it."""
    packs = json.loads(DATA.read_text(encoding="utf-8"))["packs"]
    return {node_id: pack for pack, entry in packs.items() for node_id in entry["node_ids"]}


def test_the_list_holds_every_pack_and_the_reported_clash() -> None:
    ids = other_pack_ids()
    assert len(ids) >= 20
    assert ids["DynamiCrafterModelLoader"] == "kijai/ComfyUI-DynamiCrafterWrapper"
    assert ids["DynamiCrafterLoader"] in ("ExponentialML/ComfyUI_Native_DynamiCrafter", "chaojie/ComfyUI-DynamiCrafter")


def test_no_pack_node_id_is_used_by_another_dynamicrafter_pack(comfy_host: Any) -> None:
    ours = {cls.GET_SCHEMA().node_id for cls in comfy_host.pack_nodes}
    assert len(ours) == len(comfy_host.pack_nodes) and ours
    taken = {node_id.casefold(): pack for node_id, pack in other_pack_ids().items()}
    clashes = {node_id: taken[node_id.casefold()] for node_id in ours if node_id.casefold() in taken}
    assert not clashes, f"node ids other packs use (the host keeps only one class per id): {clashes}"


def test_model_loader_keeps_its_display_name(comfy_host: Any) -> None:
    loader = comfy_host.nodes.NODE_CLASS_MAPPINGS["DynamiCrafterLoadModel"]
    assert loader.GET_SCHEMA().display_name == "DynamiCrafter Load Model"
