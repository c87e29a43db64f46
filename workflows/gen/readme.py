"""The README's node list, written from the nodes' schemas between two markers (``--check`` keeps it current)."""
from __future__ import annotations

from .layout import CONTROL, NodeType, node_types

BEGIN = "<!-- node list: written by workflows/generate.py from the nodes' schemas; edit the nodes, not this -->"
END = "<!-- end of node list -->"
GROUPS = {"loaders": "Loaders", "conditioning": "Conditioning", "sampling": "Sampling",
          "tooncrafter": "ToonCrafter (cartoon interpolation: the 512_interp UNet with a dual-reference video VAE)",
          "long video": "Long videos",
          "director": "AI video director (optional; needs `pip install openai` and an API key in an environment "
                      "variable)"}
"""Headings for the pack's node categories (``DynamiCrafter/<group>``); an unknown group is shown as it is."""


def _inputs(spec: NodeType) -> str:
    names = [f"`{s.name}`" + (" (optional)" if s.optional else "") for s in spec.sockets]
    names += [f"`{name}`" for name in spec.widgets if name != CONTROL]
    return ", ".join(names) or "none"


def node_list() -> str:
    """Markdown: every node of the pack by group, with its description, inputs and outputs."""
    groups: dict[str, list[tuple[str, NodeType]]] = {}
    for node_id, spec in node_types().items():
        if spec.ours:
            groups.setdefault(spec.category.split("/", 1)[-1], []).append((node_id, spec))
    lines: list[str] = []
    for group, members in groups.items():
        lines += [f"**{GROUPS.get(group, group)}**"]
        for node_id, spec in members:
            outputs = ", ".join(name for name, _ in spec.outputs) or "none"
            lines.append(f"- **{spec.display_name}** (`{node_id}`): {spec.description}")
            lines.append(f"  Inputs: {_inputs(spec)}. Outputs: {outputs}.")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def with_node_list(readme: str) -> str:
    """The README with the text between the markers replaced by the current node list."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md needs the node-list markers once each, in order:\n{BEGIN}\n{END}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{node_list()}\n{END}{tail}"
