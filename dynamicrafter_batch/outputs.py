"""Output files a server wrote: which names a saving node gives, and whether a file is whole.

A server killed mid-save leaves a half-written file under the item's prefix; a restarted server has no
history of it. These checks let the client tell a finished output (download it) from a torn one (run
the item again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .http_client import ComfyClient, ItemError, history_outcome, is_finished

SAVERS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "SaveVideo": lambda inputs: "mp4" if inputs.get("format", "auto") in ("auto", "mp4") else None,
    "SaveWEBM": lambda inputs: "webm",
    "SaveAnimatedWEBP": lambda inputs: "webp",
    "SaveAnimatedPNG": lambda inputs: "png",
}
"""Output nodes that write one file ``<prefix>_00001_.<ext>``: what a restarted server can be asked for."""
PROBED_COUNTERS = range(1, 4)
"""File counters looked at: a half-written first file makes the rerun write ``_00002_``."""


def _mp4_complete(data: bytes) -> bool:
    offset, seen = 0, set()
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        if size == 1 and offset + 16 <= len(data):
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(data) - offset
        if size < 8:
            return False
        seen.add(kind)
        offset += size
    return offset == len(data) and b"moov" in seen


def is_complete(data: bytes, extension: str) -> bool:
    """Whether a file a killed server may have left half-written is whole (MP4 boxes add up, PNG has IEND...)."""
    if not data:
        return False
    if extension in ("mp4", "mov", "m4v"):
        return _mp4_complete(data)
    if extension == "png":
        return data.startswith(b"\x89PNG") and data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    if extension == "webp":
        return data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") + 8 == len(data)
    if extension == "webm":
        return len(data) > 64
    return True


async def find_outputs(
    client: ComfyClient, graph: Mapping[str, Any], prefixes: Mapping[str, str]
) -> list[tuple[str, str]] | None:
    """Complete outputs (name, subfolder) under an item's prefixes, one per saving node; None unless every
    node has one (a restarted server has no history of them)."""
    found = []
    for node_id, prefix in prefixes.items():
        node = graph[node_id]
        saver = SAVERS.get(node["class_type"])
        extension = saver(node["inputs"]) if saver else None
        if extension is None:
            return None  # a saving node whose file name cannot be predicted
        subfolder, _, stem = prefix.rpartition("/")
        hit = None
        for counter in PROBED_COUNTERS:
            name = f"{stem}_{counter:05}_.{extension}"
            data = await client.fetch(name, subfolder)
            if data is None:
                break
            if is_complete(data, extension):
                hit = (name, subfolder)
                break
        if hit is None:
            return None
        found.append(hit)
    return found


async def fetch_outputs(client: ComfyClient, files: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """The item's outputs from its server: ``(extension, data)`` each."""
    if not files:
        raise ItemError("the prompt finished but saved no output file")
    fetched = []
    for name, subfolder in files:
        data = await client.fetch(name, subfolder)
        if data is None:
            raise ItemError(f"the server has no output {subfolder}/{name} any more")
        fetched.append((Path(name).suffix, data))
    return fetched


def write_outputs(fetched: list[tuple[str, bytes]], out_dir: Path, stem: str) -> list[Path]:
    """Write fetched outputs as ``<stem>[_n].<ext>`` in ``out_dir`` (each written whole, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for n, (extension, data) in enumerate(fetched):
        target = out_dir / (stem + (f"_{n + 1}" if len(fetched) > 1 else "") + extension)
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
        saved.append(target)
    return saved


async def save_outputs(client: ComfyClient, files: list[tuple[str, str]], out_dir: Path, stem: str) -> list[Path]:
    """Download the item's outputs into ``out_dir``."""
    return write_outputs(await fetch_outputs(client, files), out_dir, stem)


def canonical(graph: Any) -> str:
    return json.dumps(graph, sort_keys=True)


def is_own(entry: Mapping[str, Any], graph: Mapping[str, Any]) -> bool:
    """Whether a history entry ran exactly ``graph`` (ComfyUI keeps ``[number, id, graph, ...]``)."""
    stored = entry.get("prompt")
    return isinstance(stored, (list, tuple)) and len(stored) > 2 and canonical(stored[2]) == canonical(graph)


async def locate(job: Any, server: Any) -> tuple[str, Any]:
    """Where an ``items.Job`` is on ``server`` (a ``link.ServerLink``): queued | done (its files) |
    error (the message) | foreign (the history holds another graph under the item's id) | absent. The queue
    is read before the history: an item leaves the queue and enters the history in one step, so it is never
    missed in between; a restarted server has no history, so the output files under the item's prefixes
    (named from its unpredictable prompt id) are looked for last."""
    if job.prompt_id in await server.queue_ids():
        return "queued", None
    entry = await server.client.history(job.prompt_id)
    if is_finished(entry):
        return history_outcome(entry) if is_own(entry, job.graph) else ("foreign", None)
    files = await find_outputs(server.client, job.graph, job.prefixes)
    return ("done", files) if files else ("absent", None)
