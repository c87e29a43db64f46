#!/usr/bin/env python3
"""Batch image-to-video through a running ComfyUI server's HTTP API, resumable after any crash.

    dynamicrafter-batch --images photos/ --prompt "waves crashing" --out videos/
    dynamicrafter-batch --csv batch.csv --out videos/ --workflow image_to_video_512 --server http://127.0.0.1:8188
    python scripts/batch_client.py ...        (the same, from a checkout)

Each item (an image of the folder, or a CSV row with the columns ``image, prompt`` and optionally ``seed,
fs, variant, steps``) becomes one API-format prompt: the shipped workflow (``workflows/**/<name>.json`` in
API format; a built-in image-to-video graph when none is shipped) with the item's image, prompt, seed...
set on the nodes found by their ``class_type``. Progress comes over the websocket as one line on stderr;
outputs are fetched with ``GET /view`` into the output folder; a summary table ends the run.

Resuming (nothing lost, nothing run twice). Every item gets a prompt_id chosen here and derived from its
content (the exact graph, including a hash of the image), and its own ``filename_prefix`` on the server.
``journal.jsonl`` in the output folder records (fsync'd) each submission, output and error. On start,
and whenever the server comes back after a restart, every unfinished item is located before anything is
sent: in the server's queue (follow it), in ``/history`` (download its outputs), or, when a restarted
server has forgotten its history, as a complete output file under the item's prefix (``/view``);
only an item found nowhere is (re)submitted, under the same prompt_id. Items that failed (bad image,
validation error) are recorded and skipped by later runs unless ``--retry-failed``.

Needs only the standard library and aiohttp (which ComfyUI itself requires): it imports nothing from the
pack, so it runs from a checkout, as the ``dynamicrafter-batch`` console script, or on another machine.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

log = logging.getLogger("dynamicrafter.batch")

PACK_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_WORKFLOW = "image_to_video"
DEFAULT_PREFIX = "dynamicrafter_batch"
JOURNAL_NAME = "journal.jsonl"
CSV_COLUMNS = ("image", "prompt", "seed", "fs", "variant", "steps")

Graph = dict[str, dict[str, Any]]


class WorkflowError(ValueError):
    """The workflow cannot take an item's settings (no node for them, wrong format)."""


class ItemError(Exception):
    """One item cannot run (bad file, rejected prompt, failed node): recorded, the batch goes on."""


class ServerDown(Exception):
    """The server did not answer (restarting, killed, not yet up)."""


class BatchAborted(RuntimeError):
    """The server stayed away longer than allowed: stop, the journal keeps what is done."""


# --------------------------------------------------------------------------------------------------
# Workflows: find a shipped API-format graph and set an item's values on it by class_type
# --------------------------------------------------------------------------------------------------

LOADERS = {"DynamiCrafterCheckpointLoader": "ckpt_name", "DynamiCrafterLoadModel": "model_name"}
CONDITIONING = ("DynamiCrafterImageToVideo", "DynamiCrafterInterpolation")
FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "seed": (("DynamiCrafterSampler", "seed"), ("KSampler", "seed"), ("KSamplerAdvanced", "noise_seed"),
             ("RandomNoise", "noise_seed"), ("SamplerCustom", "noise_seed")),
    "steps": (("DynamiCrafterSampler", "steps"), ("DynamiCrafterScheduler", "steps"), ("KSampler", "steps"),
              ("KSamplerAdvanced", "steps"), ("BasicScheduler", "steps")),
    "fs": tuple((c, "fs") for c in CONDITIONING),
    "width": tuple((c, "width") for c in CONDITIONING),
    "height": tuple((c, "height") for c in CONDITIONING),
    "frames": tuple((c, "frames") for c in CONDITIONING),
    "variant": tuple((c, "variant") for c in LOADERS),
    "ckpt": tuple(LOADERS.items()),
}
"""Item setting -> the (class_type, input) pairs that carry it."""

SAVERS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "SaveVideo": lambda inputs: "mp4" if inputs.get("format", "auto") in ("auto", "mp4") else None,
    "SaveWEBM": lambda inputs: "webm",
    "SaveAnimatedWEBP": lambda inputs: "webp",
    "SaveAnimatedPNG": lambda inputs: "png",
}
"""Output nodes that write one file ``<prefix>_00001_.<ext>``: what a restarted server can be asked for."""


def is_api_format(data: Any) -> bool:
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(node, dict) and "class_type" in node for node in data.values()))


def load_workflow(path: Path) -> Graph:
    """An API-format workflow file (``{"id": {"class_type", "inputs"}}``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WorkflowError(f"cannot read the workflow {path}: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and is_api_format(data["prompt"]):
        data = data["prompt"]
    if not is_api_format(data):
        hint = " It is in the UI (graph) format: open it in ComfyUI and use 'Export (API)'." if "nodes" in data else ""
        raise WorkflowError(f"{path} is not an API-format workflow.{hint}")
    return data


def workflow_dirs() -> list[Path]:
    """Where shipped workflows are looked for: $DYNAMICRAFTER_WORKFLOWS, the pack's workflows/, ./workflows."""
    dirs = [Path(p) for p in os.environ.get("DYNAMICRAFTER_WORKFLOWS", "").split(os.pathsep) if p]
    dirs += [PACK_ROOT / "workflows", PACK_ROOT / "example_workflows", Path.cwd() / "workflows"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def find_workflow(name: str, variant: str | None = None, dirs: Iterable[Path] | None = None) -> Path | None:
    """The shipped API-format workflow called ``name`` (``image_to_video`` + variant -> ``image_to_video_512``).

    Searches the workflow folders recursively; file names may carry an ``_api`` suffix. UI-format files of
    the same name are skipped. None when nothing fits.
    """
    stems = [f"{name}_{variant}", f"{name}_{variant}_api"] if variant and variant != "auto" else []
    stems += [name, f"{name}_api", f"{name}_512", f"{name}_512_api"]
    files = [f for d in (workflow_dirs() if dirs is None else dirs) for f in sorted(d.rglob("*.json"))]
    for stem in stems:
        for candidate in files:
            if candidate.stem == stem:
                try:
                    if is_api_format(json.loads(candidate.read_text(encoding="utf-8"))):
                        return candidate
                except (OSError, json.JSONDecodeError):
                    continue
    return None


def builtin_image_to_video() -> Graph:
    """The pack's image-to-video graph (512 defaults), used when no shipped API workflow is found."""
    return {
        "1": {"class_type": "DynamiCrafterCheckpointLoader",
              "inputs": {"ckpt_name": "dynamicrafter_512_v1.ckpt", "variant": "auto", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "5": {"class_type": "DynamiCrafterImageToVideo",
              "inputs": {"positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "clip_vision": ["1", 3],
                         "image": ["4", 0], "width": 512, "height": 320, "frames": 16, "fs": 0,
                         "batch_size": 1, "fit": "crop"}},
        "6": {"class_type": "DynamiCrafterSampler",
              "inputs": {"model": ["1", 0], "positive": ["5", 0], "negative": ["5", 1], "latent": ["5", 2],
                         "seed": 123, "steps": 50, "cfg": 7.5, "eta": 1.0, "guidance_rescale": -1.0,
                         "spacing": "auto", "dynamic_rescale": "auto"}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "CreateVideo", "inputs": {"images": ["7", 0], "fps": 8.0}},
        "9": {"class_type": "SaveVideo",
              "inputs": {"video": ["8", 0], "filename_prefix": "video/dynamicrafter", "format": "mp4",
                         "codec": "h264"}},
    }


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def set_field(graph: Graph, name: str, value: Any) -> list[str]:
    """Set item setting ``name`` (a key of :data:`FIELDS`) on every node that carries it; the node ids."""
    changed = []
    for node_id, node in graph.items():
        for class_type, key in FIELDS[name]:
            if node["class_type"] == class_type and key in node.get("inputs", {}) \
                    and not _is_link(node["inputs"][key]):
                node["inputs"][key] = value
                changed.append(node_id)
    if not changed:
        wanted = ", ".join(f"{c}.{k}" for c, k in FIELDS[name])
        raise WorkflowError(f"the workflow has no node that takes '{name}' (looked for {wanted})")
    return changed


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
        node.setdefault("inputs", {})[key] = value


def set_image(graph: Graph, name: str) -> None:
    loaders = [n for n in graph.values() if n["class_type"] == "LoadImage"]
    if len(loaders) != 1:
        raise WorkflowError(f"the workflow has {len(loaders)} LoadImage nodes; the batch sets exactly one picture")
    loaders[0]["inputs"]["image"] = name


def positive_text_nodes(graph: Graph) -> list[dict]:
    """The CLIPTextEncode nodes that feed a ``positive`` input (the prompt), never the negative one."""
    found = []
    for node in graph.values():
        link = node.get("inputs", {}).get("positive")
        if _is_link(link) and graph.get(link[0], {}).get("class_type") == "CLIPTextEncode":
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
    return {i: n for i, n in graph.items() if isinstance(n.get("inputs", {}).get("filename_prefix"), str)}


def set_prefixes(graph: Graph, prefix: str) -> dict[str, str]:
    """One server-side prefix per saving node (``prefix`` itself when there is one node); node -> prefix."""
    savers = output_nodes(graph)
    if not savers:
        raise WorkflowError("the workflow saves nothing: it needs an output node with a filename_prefix "
                            "(e.g. SaveVideo)")
    chosen = {}
    for node_id, node in savers.items():
        chosen[node_id] = prefix if len(savers) == 1 else f"{prefix}_n{node_id}"
        node["inputs"]["filename_prefix"] = chosen[node_id]
    return chosen


# --------------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One row of the batch, as the user wrote it (values still text where they came from a CSV)."""

    row: int
    image: Path
    prompt: str = ""
    seed: Any = None
    fs: Any = None
    variant: Any = None
    steps: Any = None

    @property
    def label(self) -> str:
        return self.image.name


def items_from_csv(path: Path, default_prompt: str = "") -> list[Item]:
    """Rows of a CSV with a header; ``image`` paths are relative to the CSV's folder."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "image" not in columns:
            raise ValueError(f"{path}: the CSV needs a header with an 'image' column (columns: {', '.join(CSV_COLUMNS)})")
        unknown = sorted(set(columns) - set(CSV_COLUMNS))
        if unknown:
            log.warning("%s: ignoring unknown columns %s", path, ", ".join(unknown))
        items = []
        for row_number, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            if not any(row.values()):
                continue
            image = Path(row["image"]).expanduser()
            items.append(Item(row=row_number, image=image if image.is_absolute() else path.parent / image,
                              prompt=row.get("prompt") or default_prompt,
                              **{k: row.get(k) or None for k in ("seed", "fs", "variant", "steps")}))
    return items


def items_from_folder(folder: Path, prompt: str = "") -> list[Item]:
    """Every picture in ``folder`` (sorted by name); a ``<name>.txt`` beside a picture overrides the prompt."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    items = []
    for n, image in enumerate(files, start=1):
        sidecar = image.with_suffix(".txt")
        text = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else prompt
        items.append(Item(row=n, image=image, prompt=text))
    return items


@dataclass
class Settings:
    """What every item shares: the workflow choice and the command line's values."""

    workflow: str = DEFAULT_WORKFLOW
    """A workflow name (looked up per variant) or a path."""
    ckpt: str | None = None
    seed: int | None = None
    steps: int | None = None
    fs: int | None = None
    variant: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    overrides: list[str] = field(default_factory=list)
    prefix: str = DEFAULT_PREFIX


@dataclass
class Job:
    """An item made ready to send: its graph, ids and upload; or the reason it cannot run."""

    item: Item
    key: str
    graph: Graph = field(default_factory=dict)
    upload_name: str = ""
    prefixes: dict[str, str] = field(default_factory=dict)
    workflow: str = ""
    error: str | None = None

    @property
    def prompt_id(self) -> str:
        return str(uuid.UUID(hex=self.key[:32]))

    def local_stem(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.item.image.stem).strip("_") or "item"
        return f"{stem}_{self.key[:8]}"


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        raise ItemError(f"{name} {value!r} is not a whole number") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WorkflowSource:
    """Resolves the workflow for a variant once (a path, a shipped name, or the built-in graph)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._cache: dict[str | None, tuple[str, Graph]] = {}

    def get(self, variant: str | None) -> tuple[str, Graph]:
        if variant not in self._cache:
            path = Path(self.spec).expanduser()
            if path.suffix == ".json" or path.is_file():
                self._cache[variant] = (str(path), load_workflow(path))
            else:
                found = find_workflow(self.spec, variant)
                if found is not None:
                    log.info("workflow: %s", found)
                    self._cache[variant] = (str(found), load_workflow(found))
                elif self.spec == DEFAULT_WORKFLOW:
                    log.info("workflow: no shipped API workflow named %s%s; using the built-in image-to-video "
                             "graph", self.spec, f"_{variant}" if variant else "")
                    self._cache[variant] = ("built-in image_to_video", builtin_image_to_video())
                else:
                    raise WorkflowError(f"no API-format workflow named {self.spec!r} in "
                                        f"{', '.join(map(str, workflow_dirs())) or 'workflows/'}")
        name, graph = self._cache[variant]
        return name, json.loads(json.dumps(graph))


def prepare(item: Item, settings: Settings, workflows: WorkflowSource) -> Job:
    """The item's graph with its values set, its content-derived key and its server-side names."""
    fallback_key = hashlib.sha256(f"{item.row}|{item.image}|{item.prompt}".encode()).hexdigest()
    try:
        seed = _int(item.seed, "seed")
        fs = _int(item.fs, "fs")
        steps = _int(item.steps, "steps")
        variant = item.variant or settings.variant
        name, graph = workflows.get(variant)
        if not item.image.is_file():
            raise ItemError(f"image not found: {item.image}")
        image_hash = _sha256(item.image)
        upload_name = f"dcbatch_{image_hash[:20]}{item.image.suffix.lower()}"
        set_image(graph, upload_name)
        set_prompt(graph, item.prompt)
        values = {"seed": seed if seed is not None else settings.seed,
                  "steps": steps if steps is not None else settings.steps,
                  "fs": fs if fs is not None else settings.fs,
                  "variant": variant, "ckpt": settings.ckpt,
                  "width": settings.width, "height": settings.height, "frames": settings.frames}
        for key, value in values.items():
            if value is not None:
                set_field(graph, key, value)
        for spec in settings.overrides:
            set_override(graph, spec)
        set_prefixes(graph, "pending")
        key = hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()
        prefixes = set_prefixes(graph, f"{settings.prefix}/{key[:20]}")
        return Job(item, key, graph, upload_name, prefixes, name)
    except (ItemError, WorkflowError, OSError) as e:
        return Job(item, fallback_key, error=str(e))


# --------------------------------------------------------------------------------------------------
# The journal
# --------------------------------------------------------------------------------------------------


class Journal:
    """Append-only JSON lines, fsync'd after every record; the last record of an item is its state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("%s: skipping a damaged line (an interrupted write)", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def client_id(self) -> str:
        """The websocket client id of this batch: kept across restarts, so events of queued items reach us."""
        for record in self.records:
            if record.get("event") == "batch":
                return record["client_id"]
        client_id = uuid.uuid4().hex
        self.write("batch", client_id=client_id)
        return client_id

    def last(self, key: str) -> dict[str, Any] | None:
        """The item's last outcome record (done or failed), if any."""
        for record in reversed(self.records):
            if record.get("item") == key and record.get("event") in ("done", "failed"):
                return record
        return None

    def submitted(self, key: str) -> bool:
        """Whether the item was sent to a server before (by this run or an earlier one)."""
        return any(r.get("item") == key and r.get("event") == "submitted" for r in self.records)

    def write(self, event: str, **data: Any) -> None:
        record = {"time": round(time.time(), 3), "event": event, **data}
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records.append(record)

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


def _aiohttp():
    try:
        import aiohttp
    except ImportError:
        raise SystemExit("the batch client needs aiohttp (ComfyUI's own dependency): pip install aiohttp") from None
    return aiohttp


class ComfyClient:
    """The few ComfyUI routes the batch needs; connection failures become :class:`ServerDown`."""

    def __init__(self, base_url: str, client_id: str, timeout: float = 60.0) -> None:
        self.base = base_url.rstrip("/")
        self.client_id = client_id
        self._timeout = timeout
        self._session = None

    async def __aenter__(self) -> "ComfyClient":
        aiohttp = _aiohttp()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5,
                                                                            sock_read=self._timeout))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._session.close()

    def _down(self, error: BaseException) -> ServerDown:
        return ServerDown(f"{self.base}: {type(error).__name__}: {error}")

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        aiohttp = _aiohttp()
        try:
            async with self._session.request(method, self.base + path, **kwargs) as response:
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.read()
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, ConnectionError) as e:
            raise self._down(e) from None

    async def queue_ids(self) -> set[str]:
        status, data = await self._request("GET", "/queue")
        if status != 200:
            raise ServerDown(f"GET /queue answered {status}")
        return {entry[1] for part in ("queue_running", "queue_pending") for entry in data.get(part, [])}

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        status, data = await self._request("GET", f"/history/{prompt_id}")
        if status != 200:
            raise ServerDown(f"GET /history answered {status}")
        return data.get(prompt_id) if isinstance(data, dict) else None

    async def submit(self, graph: Graph, prompt_id: str) -> None:
        status, data = await self._request("POST", "/prompt", json={"prompt": graph, "client_id": self.client_id,
                                                                    "prompt_id": prompt_id})
        if status == 200:
            return
        if status == 400 and isinstance(data, dict):
            raise ItemError("the server rejected the prompt: " + describe_rejection(data))
        raise ServerDown(f"POST /prompt answered {status}")

    async def upload(self, path: Path, name: str) -> str:
        aiohttp = _aiohttp()
        form = aiohttp.FormData()
        form.add_field("image", path.read_bytes(), filename=name, content_type="application/octet-stream")
        form.add_field("overwrite", "true")
        form.add_field("type", "input")
        status, data = await self._request("POST", "/upload/image", data=form)
        if status != 200 or not isinstance(data, dict):
            raise ItemError(f"uploading {path} failed (HTTP {status})")
        return data["name"] if not data.get("subfolder") else f"{data['subfolder']}/{data['name']}"

    async def fetch(self, filename: str, subfolder: str, kind: str = "output") -> bytes | None:
        """A file the server wrote, or None when it has no such file."""
        status, data = await self._request("GET", "/view", params={"filename": filename, "subfolder": subfolder,
                                                                   "type": kind})
        if status == 404:
            return None
        if status != 200:
            raise ServerDown(f"GET /view answered {status}")
        return data

    async def object_info(self, class_type: str) -> dict[str, Any]:
        status, data = await self._request("GET", f"/object_info/{class_type}")
        if status != 200:
            raise ServerDown(f"GET /object_info answered {status}")
        return data.get(class_type, {}) if isinstance(data, dict) else {}

    def ws_url(self) -> str:
        return re.sub(r"^http", "ws", self.base) + f"/ws?clientId={self.client_id}"

    async def connect_ws(self):
        aiohttp = _aiohttp()
        try:
            return await self._session.ws_connect(self.ws_url(), heartbeat=10)
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            raise self._down(e) from None


def describe_rejection(data: Mapping[str, Any]) -> str:
    error = data.get("error") or {}
    parts = [error.get("message", "") if isinstance(error, dict) else str(error)]
    for node_id, node in (data.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            parts.append(f"node {node_id} {node.get('class_type', '')}: {e.get('message')} {e.get('details', '')}".strip())
    return "; ".join(p for p in parts if p)


def history_outcome(entry: Mapping[str, Any]) -> tuple[str, Any]:
    """``("done", files)``, ``("error", message)`` for a finished history entry."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success" or (status.get("completed") and not status.get("status_str")):
        files = []
        for node_id in sorted(entry.get("outputs", {}), key=lambda n: (len(n), n)):
            for values in entry["outputs"][node_id].values():
                for value in values if isinstance(values, list) else []:
                    if isinstance(value, dict) and "filename" in value and value.get("type", "output") == "output":
                        files.append((value["filename"], value.get("subfolder", "")))
        return "done", files
    for name, data in status.get("messages", []):
        if name == "execution_error":
            return "error", f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_message', '').strip()}"
        if name == "execution_interrupted":
            return "error", "interrupted on the server"
    return "error", f"the server reports {status.get('status_str') or 'no success'}"


def is_complete(data: bytes, extension: str) -> bool:
    """Whether a file a killed server may have left half-written is whole (MP4 boxes add up, PNG has IEND...)."""
    if not data:
        return False
    if extension in ("mp4", "mov", "m4v"):
        offset, seen = 0, set()
        while offset + 8 <= len(data):
            size, kind = int.from_bytes(data[offset:offset + 4], "big"), data[offset + 4:offset + 8]
            if size == 1 and offset + 16 <= len(data):
                size = int.from_bytes(data[offset + 8:offset + 16], "big")
            elif size == 0:
                size = len(data) - offset
            if size < 8:
                return False
            seen.add(kind)
            offset += size
        return offset == len(data) and b"moov" in seen
    if extension == "png":
        return data.startswith(b"\x89PNG") and data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    if extension in ("webp", "webm"):
        if extension == "webp":
            return data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") + 8 == len(data)
        return len(data) > 64
    return True


# --------------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------------


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, a line per change otherwise."""

    def __init__(self, total: int, stream=None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_text = ""
        self._last_time = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        line = f"[{self.done}/{self.total} done] {text}"
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + line[:200])
            self.stream.flush()
        elif force or (line != self._last_text and now - self._last_time >= 1.0):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_time = now
        self._last_text = line

    def message(self, text: str) -> None:
        """A line that stays (an item finished or failed)."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------------


@dataclass
class Result:
    job: Job
    status: str
    """done | failed | skipped (failed in an earlier run) | not run (the batch stopped)"""
    files: list[Path] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    note: str = ""


@dataclass
class Options:
    concurrency: int = 2
    poll: float = 2.0
    """Seconds between checks of an item on the server (events wake it sooner)."""
    server_wait: float = 600.0
    """How long the server may stay away (restart) before the batch stops."""
    retry_failed: bool = False


class BatchRunner:
    """Runs jobs on one server, following its websocket; see the module docstring for resuming."""

    def __init__(self, server: str, out_dir: Path, options: Options | None = None,
                 progress: Progress | None = None) -> None:
        self.server = server
        self.out_dir = Path(out_dir)
        self.options = options or Options()
        self.progress = progress
        self.journal = Journal(self.out_dir / JOURNAL_NAME)
        self.client: ComfyClient | None = None
        self._wake: dict[str, asyncio.Event] = {}
        self._names: dict[str, Job] = {}
        self._down_since: float | None = None
        self._queue_cache: tuple[float, set[str]] | None = None
        self._aborted: str | None = None

    # -- entry point ---------------------------------------------------------------------------

    async def run(self, jobs: list[Job]) -> list[Result]:
        unique: dict[str, Job] = {}
        for job in jobs:
            if job.key in unique:
                log.warning("row %s repeats row %s exactly: it runs once", job.item.row, unique[job.key].item.row)
            unique.setdefault(job.key, job)
        if self.progress is None:
            self.progress = Progress(len(unique))
        self.progress.total = len(unique)
        async with ComfyClient(self.server, self.journal.client_id()) as client:
            self.client = client
            monitor = asyncio.create_task(self._follow_events())
            slots = asyncio.Semaphore(max(1, self.options.concurrency))
            try:
                tasks = [asyncio.create_task(self._run_job(job, slots)) for job in unique.values()]
                done = await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                monitor.cancel()
                await asyncio.gather(monitor, return_exceptions=True)
                self.journal.close()
        by_key = {}
        for job, outcome in zip(unique.values(), done):
            if isinstance(outcome, BaseException):
                reason = str(outcome) if isinstance(outcome, BatchAborted) else f"{type(outcome).__name__}: {outcome}"
                outcome = Result(job, "not run", error=reason)
            by_key[job.key] = outcome
        return [by_key[job.key] for job in jobs]

    # -- one item --------------------------------------------------------------------------------

    async def _run_job(self, job: Job, slots: asyncio.Semaphore) -> Result:
        previous = self.journal.last(job.key)
        if previous and previous["event"] == "done":
            files = [self.out_dir / name for name in previous.get("files", [])]
            if files and all(f.is_file() for f in files):
                return self._finished(Result(job, "done", files, note="earlier run"))
        if previous and previous["event"] == "failed" and not self.options.retry_failed:
            return self._finished(Result(job, "skipped", error=previous.get("error", ""), note="failed earlier"))
        if job.error:
            self.journal.write("failed", item=job.key, row=job.item.row, image=str(job.item.image), error=job.error)
            return self._finished(Result(job, "failed", error=job.error))

        async with slots:
            if self._aborted:
                raise BatchAborted(self._aborted)
            started = time.monotonic()
            self._wake[job.prompt_id] = asyncio.Event()
            self._names[job.prompt_id] = job
            try:
                result = await self._drive(job)
            except ItemError as e:
                self.journal.write("failed", item=job.key, row=job.item.row, image=str(job.item.image), error=str(e))
                result = Result(job, "failed", error=str(e))
            finally:
                self._wake.pop(job.prompt_id, None)
            result.seconds = time.monotonic() - started
            return self._finished(result)

    async def _drive(self, job: Job) -> Result:
        """Locate the item on the server; submit only when it is nowhere; wait; fetch its outputs."""
        submitted = False
        sent_before = self.journal.submitted(job.key)
        while True:
            try:
                where, detail = await self._locate(job)
                if where == "done":
                    files = await self._download(job, detail)
                    self.journal.write("done", item=job.key, prompt_id=job.prompt_id, row=job.item.row,
                                       image=str(job.item.image), files=[f.name for f in files])
                    return Result(job, "done", files, note="" if submitted else "found on the server")
                if where == "error":
                    raise ItemError(detail)
                if where == "absent":
                    if submitted or sent_before:
                        log.info("%s: the server lost it (restarted?); sending it again", job.item.label)
                        self.journal.write("requeued", item=job.key, prompt_id=job.prompt_id)
                    await self._submit(job)
                    submitted = True
                self._down_since = None
                await self._sleep_until_woken(job.prompt_id)
            except ServerDown as e:
                await self._server_gone(e)

    async def _submit(self, job: Job) -> None:
        name = await self.client.upload(job.item.image, job.upload_name)
        if name != job.upload_name:
            set_image(job.graph, name)
        await self.client.submit(job.graph, job.prompt_id)
        self._queue_cache = None
        self.journal.write("submitted", item=job.key, prompt_id=job.prompt_id, row=job.item.row,
                           image=str(job.item.image), workflow=job.workflow)
        self.progress.show(f"queued {job.item.label}")

    async def _locate(self, job: Job) -> tuple[str, Any]:
        """queued | done (files) | error (message) | absent. The queue is read before the history:
        an item leaves the queue and enters the history in one step, so it is never missed in between."""
        if job.prompt_id in await self._queue():
            return "queued", None
        entry = await self.client.history(job.prompt_id)
        if entry is not None and (entry.get("status") or {}).get("completed") is not None:
            return history_outcome(entry)
        files = await self._probe(job)
        if files:
            return "done", files
        return "absent", None

    async def _queue(self) -> set[str]:
        now = time.monotonic()
        if self._queue_cache is None or now - self._queue_cache[0] > 0.3:
            self._queue_cache = (now, await self.client.queue_ids())
        return self._queue_cache[1]

    async def _probe(self, job: Job) -> list[tuple[str, str]] | None:
        """Complete outputs under the item's prefixes (a restarted server has no history of them)."""
        found = []
        for node_id, prefix in job.prefixes.items():
            node = job.graph[node_id]
            extension = SAVERS.get(node["class_type"], lambda _: None)(node["inputs"])
            if extension is None:
                return None  # an output node whose file name cannot be predicted: not probed
            subfolder, _, stem = prefix.rpartition("/")
            hit = None
            for counter in range(1, 4):  # a half-written first file makes the rerun write _00002_
                name = f"{stem}_{counter:05}_.{extension}"
                data = await self.client.fetch(name, subfolder)
                if data is None:
                    break
                if is_complete(data, extension):
                    hit = (name, subfolder)
                    break
            if hit is None:
                return None
            found.append(hit)
        return found

    async def _download(self, job: Job, files: list[tuple[str, str]]) -> list[Path]:
        if not files:
            raise ItemError("the prompt finished but saved no output file")
        saved = []
        for n, (name, subfolder) in enumerate(files):
            data = await self.client.fetch(name, subfolder)
            if data is None:
                raise ItemError(f"the server has no output {subfolder}/{name} any more")
            suffix = Path(name).suffix
            target = self.out_dir / (job.local_stem() + (f"_{n + 1}" if len(files) > 1 else "") + suffix)
            partial = target.with_name(target.name + ".part")
            with open(partial, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
            saved.append(target)
        return saved

    async def _sleep_until_woken(self, prompt_id: str) -> None:
        event = self._wake[prompt_id]
        try:
            await asyncio.wait_for(event.wait(), self.options.poll)
        except asyncio.TimeoutError:
            pass
        event.clear()

    async def _server_gone(self, error: ServerDown) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.info("server unreachable (%s); waiting for it", error)
            self.progress.show(f"waiting for the server at {self.server}", force=True)
        elif now - self._down_since > self.options.server_wait or self._aborted:
            self._aborted = self._aborted or (f"the server at {self.server} was unreachable for "
                                              f"{self.options.server_wait:.0f} s; run the same command again to resume")
            raise BatchAborted(self._aborted)
        self._queue_cache = None
        await asyncio.sleep(min(2.0, self.options.poll))

    def _finished(self, result: Result) -> Result:
        self.progress.done += 1
        label = f"{result.job.item.row}: {result.job.item.label}"
        if result.status == "done":
            self.progress.message(f"done    {label} -> {', '.join(str(f) for f in result.files)}"
                                  + (f" ({result.note})" if result.note else ""))
        else:
            self.progress.message(f"{result.status:7} {label}: {result.error}")
        return result

    # -- events ----------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        """Websocket events -> progress line, and wake the item a finished prompt belongs to."""
        aiohttp = _aiohttp()
        while True:
            try:
                ws = await self.client.connect_ws()
            except ServerDown:
                await asyncio.sleep(0.5)
                continue
            for event in self._wake.values():  # (re)connected: every item looks again
                event.set()
            try:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self._on_event(json.loads(message.data))
                    elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
            except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
                pass
            finally:
                await ws.close()
            for event in self._wake.values():  # the server went away: every item looks again
                event.set()
            await asyncio.sleep(0.5)

    def _on_event(self, message: Mapping[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        prompt_id = data.get("prompt_id")
        job = self._names.get(prompt_id)
        if job is None:
            return
        label = job.item.label
        if kind == "executing" and data.get("node") is not None:
            node = job.graph.get(str(data["node"]), {}).get("class_type", data["node"])
            self.progress.show(f"{label}: {node}")
        elif kind == "progress":
            node = job.graph.get(str(data.get("node")), {}).get("class_type", data.get("node"))
            self.progress.show(f"{label}: {node} {data.get('value')}/{data.get('max')}",
                               force=data.get("value") == data.get("max"))
        elif kind in ("execution_success", "execution_error", "execution_interrupted") or \
                (kind == "executing" and data.get("node") is None):
            event = self._wake.get(prompt_id)
            if event is not None:
                event.set()


async def run_prompt_once(server: str, graph: Graph, progress: Progress | None = None,
                          timeout: float = 24 * 3600.0) -> dict[str, Any]:
    """Queue one graph outside any batch (e.g. a model download) and return its history entry."""
    prompt_id = str(uuid.uuid4())
    progress = progress or Progress(1)
    aiohttp = _aiohttp()
    async with ComfyClient(server, uuid.uuid4().hex) as client:
        ws = await client.connect_ws()
        try:
            await client.submit(graph, prompt_id)
            deadline = time.monotonic() + timeout
            checked = 0.0
            while time.monotonic() < deadline:
                finished = False
                try:
                    message = await ws.receive(timeout=2.0)
                except asyncio.TimeoutError:
                    message = None
                if message is not None and message.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(message.data)
                    kind, body = data.get("type"), data.get("data") or {}
                    if body.get("prompt_id") == prompt_id:
                        if kind == "progress":
                            node = graph.get(str(body.get("node")), {}).get("class_type", "")
                            progress.show(f"{node} {body.get('value')}/{body.get('max')}")
                        finished = kind in ("execution_success", "execution_error", "execution_interrupted")
                elif message is not None and message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    raise ServerDown("the server closed the connection")
                if finished or time.monotonic() - checked > 2.0:
                    checked = time.monotonic()
                    entry = await client.history(prompt_id)
                    if entry is not None and (entry.get("status") or {}).get("completed") is not None:
                        return entry
            raise TimeoutError(f"the prompt did not finish within {timeout:.0f} s")
        finally:
            await ws.close()


# --------------------------------------------------------------------------------------------------
# Summary and command line
# --------------------------------------------------------------------------------------------------


def summary_table(results: list[Result]) -> str:
    rows = [("row", "image", "status", "seconds", "output / error")]
    for r in results:
        detail = ", ".join(f.name for f in r.files) if r.files else r.error
        if r.note:
            detail += f" ({r.note})"
        rows.append((str(r.job.item.row), r.job.item.label, r.status, f"{r.seconds:.1f}" if r.seconds else "-",
                     detail.replace("\n", " ")[:120]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dynamicrafter-batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="a folder of pictures (a <name>.txt beside one is its prompt)")
    source.add_argument("--csv", type=Path, help="a CSV with columns image, prompt[, seed, fs, variant, steps]")
    parser.add_argument("--out", type=Path, required=True, help="output folder (holds journal.jsonl)")
    parser.add_argument("--server", default=os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"),
                        help="ComfyUI's address (default $COMFYUI_URL or http://127.0.0.1:8188)")
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW,
                        help="a shipped workflow name (image_to_video -> workflows/**/image_to_video_<variant>.json) "
                             "or an API-format JSON file")
    parser.add_argument("--prompt", default="", help="the prompt for items without one")
    parser.add_argument("--ckpt", help="checkpoint file name for the DynamiCrafter loader")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--fs", type=int, help="frame stride / fps conditioning (0 = the variant's default)")
    parser.add_argument("--variant", help="auto, 256, 512, 1024 or 512_interp")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="CLASS.INPUT=VALUE",
                        help="set any input by node class, e.g. --set DynamiCrafterSampler.cfg=5 (repeatable)")
    parser.add_argument("--concurrency", type=int, default=2, help="items queued on the server at once (default 2)")
    parser.add_argument("--retry-failed", action="store_true", help="run items that failed in an earlier run again")
    parser.add_argument("--server-wait", type=float, default=600.0,
                        help="seconds to wait for an unreachable server before stopping (default 600)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status checks (default 2)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="server-side output subfolder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def build_jobs(items: list[Item], settings: Settings) -> list[Job]:
    workflows = WorkflowSource(settings.workflow)
    return [prepare(item, settings, workflows) for item in items]


def run_batch(server: str, jobs: list[Job], out_dir: Path, options: Options | None = None,
              progress: Progress | None = None) -> list[Result]:
    """The engine, for other programs (the run command): run ``jobs``, return one result per job."""
    return asyncio.run(BatchRunner(server, out_dir, options, progress).run(jobs))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        items = items_from_csv(args.csv, args.prompt) if args.csv else items_from_folder(args.images, args.prompt)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not items:
        print("error: no items (no pictures in the folder, or an empty CSV)", file=sys.stderr)
        return 2
    settings = Settings(workflow=args.workflow, ckpt=args.ckpt, seed=args.seed, steps=args.steps, fs=args.fs,
                        variant=args.variant, width=args.width, height=args.height, frames=args.frames,
                        overrides=args.overrides, prefix=args.prefix.strip("/") or DEFAULT_PREFIX)
    jobs = build_jobs(items, settings)
    options = Options(concurrency=args.concurrency, poll=args.poll, server_wait=args.server_wait,
                      retry_failed=args.retry_failed)
    results = run_batch(args.server, jobs, args.out, options, Progress(len(jobs), enabled=not args.quiet))
    print(summary_table(results))
    return 0 if all(r.status == "done" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
