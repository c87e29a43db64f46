"""The README's node list and variant table, written from the nodes' schemas and the variant table between
markers (``--check`` keeps them current)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .host import variant_config
from .layout import CONTROL, NodeType, node_types

NODE_LIST = (
    "<!-- node list: written by workflows/generate.py from the nodes' schemas; edit the nodes, not this -->",
    "<!-- end of node list -->",
)
VARIANT_TABLE = (
    "<!-- variant table: written by workflows/generate.py from dynamicrafter/config.py -->",
    "<!-- end of variant table -->",
)
GROUPS = {
    "loaders": "Loaders",
    "conditioning": "Conditioning",
    "sampling": "Sampling",
    "tooncrafter": "ToonCrafter (cartoon interpolation: the 512_interp UNet with a dual-reference video VAE)",
    "long video": "Long videos",
    "director": "AI video director (optional; needs `pip install openai` and an API key in an environment variable)",
}
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


def _fs_meaning(row: Any) -> str:
    low, high = row.fs_range
    if row.fs_meaning == "frame_stride":
        return f"frame stride (larger = more motion, {low}-{high})"
    return f"frames per second (smaller = more motion, {low}-{high})"


def _notes(row: Any) -> str:
    spacing = {"uniform": "uniform", "uniform_trailing": "trailing"}[row.sampling.spacing]
    parts = [f"{row.schedule.prediction} prediction"]
    if row.schedule.zero_terminal_snr:
        parts.append("zero-SNR")
    parts.append(f"{spacing} DDIM")
    if row.schedule.dynamic_rescale:
        parts.append(f"dynamic-rescale base {row.schedule.base_scale}")
    if row.interpolation:
        parts.append("interpolation and loops")
    return ", ".join(parts)


def variant_table() -> str:
    """Markdown table of the released variants, from ``dynamicrafter/config.py``."""
    lines = ["| variant | size (W x H) | fs means | default fs | notes |", "|---|---|---|---|---|"]
    for row in variant_config().VARIANTS.values():
        lines.append(
            f"| {row.name} | {row.width} x {row.height} | {_fs_meaning(row)} | {row.default_fs} | {_notes(row)} |"
        )
    return "\n".join(lines)


def _replace_between(readme: str, markers: tuple[str, str], text: str) -> str:
    begin, end = markers
    if readme.count(begin) != 1 or readme.count(end) != 1 or readme.index(begin) > readme.index(end):
        raise ValueError(f"README.md needs these markers once each, in order:\n{begin}\n{end}")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{text}\n{end}{tail}"


GENERATED: tuple[tuple[tuple[str, str], Callable[[], str]], ...] = (
    (VARIANT_TABLE, variant_table),
    (NODE_LIST, node_list),
)


def with_generated_sections(readme: str) -> str:
    """The README with the text between each pair of markers replaced by its current version."""
    for markers, write in GENERATED:
        readme = _replace_between(readme, markers, write())
    return readme
