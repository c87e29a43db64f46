"""API-format workflows for the batch client: find a shipped graph, read what it offers, set an item's values.

Nothing here spells a node's inputs: the values an item may set (:func:`fields`) are the literal inputs of
the workflow's own nodes, so a renamed input (in a node's file, then ``workflows/generate.py``) reaches the
client through the regenerated workflow. The client finds only the stock roles it fills itself: the
picture (``LoadImage``), the prompt (the ``CLIPTextEncode`` linked to a ``positive`` input) and the output
names (every literal ``filename_prefix``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("dynamicrafter.batch")

PACK_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOW = "image_to_video"
DEFAULT_VARIANT = "512"
"""``image_to_video`` without a variant is the shipped ``image_to_video_512`` (the pack's default model)."""
CLIENT_INPUTS = ("image", "text", "filename_prefix")
"""Inputs the client fills itself (the picture, the prompt, the output names): never item fields."""

Graph = dict[str, dict[str, Any]]


class WorkflowError(ValueError):
    """The workflow cannot take an item's settings (no node for them, wrong format)."""


def is_api_format(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(node, dict) and "class_type" in node for node in data.values())
    )


def parse_workflow(data: Any, origin: str) -> Graph:
    """An API-format graph from decoded JSON (also the ``{"prompt": graph}`` envelope)."""
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and is_api_format(data["prompt"]):
        data = data["prompt"]
    if not is_api_format(data):
        hint = (
            " It is in the UI (graph) format: open it in ComfyUI and use 'Export (API)'."
            if isinstance(data, dict) and "nodes" in data
            else ""
        )
        raise WorkflowError(f"{origin} is not an API-format workflow.{hint}")
    for node in data.values():
        node.setdefault("inputs", {})
    return data


def load_workflow(path: Path) -> Graph:
    """An API-format workflow file (``{"id": {"class_type", "inputs"}}``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WorkflowError(f"cannot read the workflow {path}: {e}") from None
    return parse_workflow(data, str(path))


def workflow_dirs() -> list[Path]:
    """Where shipped workflows are looked for: $DYNAMICRAFTER_WORKFLOWS, the pack's workflows/, ./workflows."""
    dirs = [Path(p) for p in os.environ.get("DYNAMICRAFTER_WORKFLOWS", "").split(os.pathsep) if p]
    dirs += [PACK_ROOT / "workflows", PACK_ROOT / "example_workflows", Path.cwd() / "workflows"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def candidate_stems(name: str, variant: str | None) -> list[str]:
    """File names (without ``.json``) that ``name`` + ``variant`` may have, best first."""
    stems = [f"{name}_{variant}", f"{name}_{variant}_api"] if variant and variant != "auto" else []
    return stems + [name, f"{name}_api", f"{name}_{DEFAULT_VARIANT}", f"{name}_{DEFAULT_VARIANT}_api"]


def find_workflow(name: str, variant: str | None = None, dirs: Iterable[Path] | None = None) -> Path | None:
    """The shipped API-format workflow called ``name`` (``image_to_video`` + variant -> ``image_to_video_512``).

    Searches the workflow folders recursively; UI-format files of the same name are skipped. None when
    nothing fits.
    """
    files = [f for d in (workflow_dirs() if dirs is None else dirs) for f in sorted(d.rglob("*.json"))]
    for stem in candidate_stems(name, variant):
        for candidate in files:
            if candidate.stem == stem:
                try:
                    if is_api_format(json.loads(candidate.read_text(encoding="utf-8"))):
                        return candidate
                except (OSError, json.JSONDecodeError):
                    continue
    return None


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def fields(graph: Graph) -> dict[str, Any]:
    """What an item may set: every literal input of the graph's nodes (name -> its value in the graph)."""
    found: dict[str, Any] = {}
    for node in graph.values():
        for name, value in node.get("inputs", {}).items():
            if name not in CLIENT_INPUTS and not is_link(value) and not isinstance(value, (list, dict)):
                found.setdefault(name, value)
    return found


def coerce(name: str, raw: Any, example: Any) -> Any:
    """``raw`` (text from a CSV or the command line) as the type of the workflow's own value ``example``."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if isinstance(example, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if isinstance(example, int):
            return int(text)
        if isinstance(example, float):
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a finite number"}[type(example)]
        raise WorkflowError(f"{name} {raw!r} is not {kind}") from None
    return text


def set_field(graph: Graph, name: str, raw: Any) -> list[str]:
    """Set item field ``name`` on every node whose literal input has that name; the node ids."""
    example = fields(graph).get(name)
    if example is None:
        raise WorkflowError(f"the workflow has no node that takes '{name}' (it offers {', '.join(fields(graph))})")
    value = coerce(name, raw, example)
    changed = []
    for node_id, node in graph.items():
        inputs = node["inputs"]
        if name in inputs and not is_link(inputs[name]):
            inputs[name] = value
            changed.append(node_id)
    return changed


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set CLASS.INPUT=VALUE`` (repeatable) into ``overrides``: the batch client's and the run command's."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="CLASS.INPUT=VALUE", help=help)


def set_override(graph: Graph, spec: str) -> None:
    """``Class.input=value`` (value as JSON when it parses, else a string) on every node of that class."""
    target, _, raw = spec.partition("=")
    class_type, _, key = target.partition(".")
    if not raw or not key:
        raise WorkflowError(f"--set {spec!r}: expected CLASS.INPUT=VALUE, e.g. DynamiCrafterSampler.cfg=5")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    nodes = [n for n in graph.values() if n["class_type"] == class_type]
    if not nodes:
        raise WorkflowError(f"--set {spec!r}: the workflow has no {class_type} node")
    for node in nodes:
        node["inputs"][key] = value


def set_image(graph: Graph, name: str) -> None:
    loaders = [n for n in graph.values() if n["class_type"] == "LoadImage"]
    if len(loaders) != 1:
        raise WorkflowError(f"the workflow has {len(loaders)} LoadImage nodes; the batch sets exactly one picture")
    loaders[0]["inputs"]["image"] = name


def positive_text_nodes(graph: Graph) -> list[dict]:
    """The CLIPTextEncode nodes that feed a ``positive`` input (the prompt), never the negative one."""
    found = []
    for node in graph.values():
        link = node["inputs"].get("positive")
        if is_link(link) and graph.get(link[0], {}).get("class_type") == "CLIPTextEncode":
            source = graph[link[0]]
            if source not in found:
                found.append(source)
    return found


def set_prompt(graph: Graph, text: str) -> None:
    nodes = positive_text_nodes(graph)
    if not nodes:
        raise WorkflowError("the workflow has no CLIPTextEncode node linked to a 'positive' input for the prompt")
    for node in nodes:
        node["inputs"]["text"] = text


def output_nodes(graph: Graph) -> dict[str, dict]:
    """Nodes with a literal ``filename_prefix`` (the ones that save files)."""
    return {i: n for i, n in graph.items() if isinstance(n["inputs"].get("filename_prefix"), str)}


def set_prefixes(graph: Graph, prefix: str) -> dict[str, str]:
    """One server-side prefix per saving node (``prefix`` itself when there is one node); node -> prefix."""
    savers = output_nodes(graph)
    if not savers:
        raise WorkflowError(
            "the workflow saves nothing: it needs an output node with a filename_prefix (e.g. SaveVideo)"
        )
    chosen = {}
    for node_id, node in savers.items():
        chosen[node_id] = prefix if len(savers) == 1 else f"{prefix}_n{node_id}"
        node["inputs"]["filename_prefix"] = chosen[node_id]
    return chosen
