"""Batch items: the rows a user gives (a CSV or a folder of pictures), made into ready-to-send jobs.

A job is an item's graph with its values set, plus a key derived from that exact graph (and a hash of
the picture): the same item always gets the same key, which is what lets any client run find in the
journal what an earlier run did. The prompt id, upload name and output prefix the server sees are not
derived from the key alone (anyone with the same picture could compute them): the runner binds them with
the journal's secret (:meth:`Job.bind`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import LocalFileError, Upload, check_picture, readable_beside
from .graph import (
    DEFAULT_WORKFLOW,
    Graph,
    WorkflowError,
    candidate_stems,
    fields,
    find_workflow,
    load_workflow,
    parse_workflow,
    set_field,
    set_image,
    set_override,
    set_prefixes,
    set_prompt,
    workflow_dirs,
)

log = logging.getLogger("dynamicrafter.batch")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_PREFIX = "dynamicrafter_batch"
ITEM_COLUMNS = ("image", "prompt")
"""CSV columns the client reads itself; every other column names a workflow input (seed, fs, variant...)."""
VARIANT_FIELD = "variant"
"""The item field that also picks the workflow file (``image_to_video`` + ``1024`` -> ``image_to_video_1024``)."""

RemoteWorkflows = Callable[[list[str]], "tuple[str, Any] | None"]
"""Asks a server for a shipped workflow by file stems (best first): (where, decoded JSON) or None."""


@dataclass(frozen=True)
class Item:
    """One row of the batch, as the user wrote it (values still text where they came from a CSV)."""

    row: int
    image: Path
    prompt: str = ""
    values: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    """The folder tree the picture must lie in (the CSV's or the --images folder); None: anywhere."""

    @property
    def label(self) -> str:
        return self.image.name


def items_from_csv(path: Path, default_prompt: str = "", allow_outside: bool = False) -> list[Item]:
    """Rows of a CSV with a header; ``image`` paths are relative to the CSV's folder, and must lie in its
    folder tree unless ``allow_outside``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "image" not in columns:
            raise ValueError(
                f"{path}: the CSV needs a header with an 'image' column (and optionally 'prompt' and "
                "workflow inputs such as seed, fs, variant, steps)"
            )
        items = []
        for row_number, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            if not any(row.values()):
                continue
            image = Path(row["image"]).expanduser()
            values = {k: v for k, v in row.items() if k not in ITEM_COLUMNS and v}
            items.append(
                Item(
                    row=row_number,
                    image=image if image.is_absolute() else path.parent / image,
                    prompt=row.get("prompt") or default_prompt,
                    values=values,
                    root=None if allow_outside else path.parent,
                )
            )
    return items


def items_from_folder(folder: Path, prompt: str = "", allow_outside: bool = False) -> list[Item]:
    """Every picture in ``folder`` (sorted by name); a ``<name>.txt`` beside a picture overrides the prompt.
    Links that lead out of the folder are refused (pictures) or ignored (prompts) unless ``allow_outside``."""
    root = None if allow_outside else folder
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    items = []
    for n, image in enumerate(files, start=1):
        sidecar = image.with_suffix(".txt")
        text = sidecar.read_text(encoding="utf-8").strip() if readable_beside(sidecar, root) else prompt
        items.append(Item(row=n, image=image, prompt=text, root=root))
    return items


@dataclass
class Settings:
    """What every item shares: the workflow choice and the command line's values."""

    workflow: str = DEFAULT_WORKFLOW
    """A workflow name (looked up per variant) or a path."""
    values: dict[str, Any] = field(default_factory=dict)
    """Workflow input -> value for every item (an item's own value wins); None values are ignored."""
    overrides: list[str] = field(default_factory=list)
    prefix: str = DEFAULT_PREFIX


def secret_id(secret: str, text: str) -> str:
    """A prompt id (UUID form) only the holder of ``secret`` can compute from ``text``."""
    return str(uuid.UUID(hex=hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]))


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
    upload: Upload | None = None
    prefix_root: str = DEFAULT_PREFIX
    prompt_id: str = ""
    """Set by :meth:`bind`: what the server knows the item by."""
    secret: str = field(default="", repr=False)

    def bind(self, secret: str, prompt_id: str | None = None) -> None:
        """Give the item its server-side names: ``prompt_id`` (a journal's record), else one derived from
        the key with ``secret``; the output prefix follows from the prompt id, the upload name from the
        picture and ``secret``."""
        self.secret = secret
        self.prompt_id = prompt_id or secret_id(secret, self.key)
        if self.upload is not None:
            token = uuid.UUID(secret_id(secret, "upload:" + self.upload.sha256)).hex[:20]
            self.upload_name = f"dcbatch_{token}{self.item.image.suffix.lower()}"
            set_image(self.graph, self.upload_name)
        self.prefixes = set_prefixes(self.graph, f"{self.prefix_root}/{uuid.UUID(self.prompt_id).hex[:20]}")

    def reissue(self) -> None:
        """The next id of the item's chain (its server holds someone else's result under the current one):
        derived, not random, so that whoever resumes the item computes the same one."""
        self.bind(self.secret, secret_id(self.secret, f"after:{self.prompt_id}"))

    def local_stem(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.item.image.stem).strip("_") or "item"
        return f"{stem}_{self.key[:8]}"


@dataclass
class Result:
    """What became of a job in this run."""

    job: Job
    status: str
    """done | failed | skipped (failed in an earlier run) | not run (the batch stopped)"""
    files: list[Path] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0
    note: str = ""
    server: str = ""


class WorkflowSource:
    """Resolves the workflow for a variant once: a path, a shipped name (here, else from the server)."""

    def __init__(self, spec: str, remote: RemoteWorkflows | None = None) -> None:
        self.spec = spec
        self.remote = remote
        self._cache: dict[str | None, tuple[str, Graph]] = {}

    def get(self, variant: str | None) -> tuple[str, Graph]:
        if variant not in self._cache:
            self._cache[variant] = self._resolve(variant)
        name, graph = self._cache[variant]
        return name, json.loads(json.dumps(graph))

    def _resolve(self, variant: str | None) -> tuple[str, Graph]:
        path = Path(self.spec).expanduser()
        if path.suffix == ".json" or path.is_file():
            return str(path), load_workflow(path)
        found = find_workflow(self.spec, variant)
        if found is not None:
            log.info("workflow: %s", found)
            return str(found), load_workflow(found)
        fetched = self.remote(candidate_stems(self.spec, variant)) if self.remote else None
        if fetched is not None:
            log.info("workflow: %s", fetched[0])
            return fetched[0], parse_workflow(fetched[1], fetched[0])
        searched = ", ".join(map(str, workflow_dirs())) or "no workflows/ folder"
        raise WorkflowError(
            f"no API-format workflow named {self.spec!r} (variant {variant or 'default'}) in "
            f"{searched}{' nor on the server' if self.remote else ''}; give --workflow FILE.json"
        )


@functools.cache
def _ignored_column(column: str, workflow: str) -> None:
    log.warning("the CSV column %r is no input of %s: ignored", column, workflow)


def prepare(item: Item, settings: Settings, workflows: WorkflowSource) -> Job:
    """The item's graph with its values set, its content-derived key and its server-side names."""
    fallback_key = hashlib.sha256(f"{item.row}|{item.image}|{item.prompt}".encode()).hexdigest()
    try:
        values = {k: v for k, v in settings.values.items() if v is not None} | item.values
        name, graph = workflows.get(values.get(VARIANT_FIELD))
        upload = check_picture(item.image, item.root)
        upload_name = f"dcbatch_{upload.sha256[:20]}{item.image.suffix.lower()}"
        set_image(graph, upload_name)
        set_prompt(graph, item.prompt)
        offered = fields(graph)
        for key, value in values.items():
            if key in item.values and key not in offered:
                _ignored_column(key, name)
                continue
            set_field(graph, key, value)
        for spec in settings.overrides:
            set_override(graph, spec)
        set_prefixes(graph, "pending")
        key = hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()
        return Job(item, key, graph, upload_name, {}, name, upload=upload, prefix_root=settings.prefix)
    except (WorkflowError, LocalFileError, OSError) as e:
        return Job(item, fallback_key, error=str(e))


def build_jobs(items: list[Item], settings: Settings, remote: RemoteWorkflows | None = None) -> list[Job]:
    workflows = WorkflowSource(settings.workflow, remote)
    return [prepare(item, settings, workflows) for item in items]
