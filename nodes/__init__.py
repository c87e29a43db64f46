"""Everything that touches ComfyUI. ``comfy_entrypoint`` lists the pack's nodes (all ``DynamiCrafter.*``)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .registry import all_nodes


class DynamiCrafterExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()


async def comfy_entrypoint() -> DynamiCrafterExtension:
    return DynamiCrafterExtension()
