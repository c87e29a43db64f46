"""ComfyUI's HTTP and websocket API, as the batch client uses it (nothing else: no shared filesystem).

Connection failures become :class:`ServerDown`; a prompt the server refuses or fails becomes
:class:`ItemError`. Extra request headers (for a server behind an authenticating proxy) go with every
request and the websocket, and never into a message: servers are named by :func:`display_url`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("dynamicrafter.batch")

FINISHED_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
MAX_WS_MESSAGE = 64 << 20
"""Largest websocket frame accepted (previews are far smaller)."""
DEFAULT_MAX_UPLOAD_MB = 100.0
"""ComfyUI's ``--max-upload-size`` default."""
UPLOAD_OVERHEAD = 4096
"""Room for the multipart form around the file (the server's limit counts the whole body)."""


class ItemError(Exception):
    """One item cannot run (bad file, rejected prompt, failed node): recorded, the batch goes on."""


class ServerDown(Exception):
    """The server did not answer (restarting, killed, not yet up)."""


def _option(argv: list[Any], name: str, default: float) -> float:
    """A numeric option's value in a command line (``--name X`` or ``--name=X``), else ``default``."""
    value = None
    for n, word in enumerate(argv):
        if word == name and n + 1 < len(argv):
            value = argv[n + 1]
        elif isinstance(word, str) and word.startswith(name + "="):
            value = word.partition("=")[2]
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def display_url(url: str) -> str:
    """The server's address without any user:password part."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _aiohttp():
    try:
        import aiohttp
    except ImportError:
        raise SystemExit("the batch client needs aiohttp (ComfyUI's own dependency): pip install aiohttp") from None
    return aiohttp


class ComfyClient:
    """The few ComfyUI routes the batch needs, on one server."""

    def __init__(
        self, base_url: str, client_id: str, timeout: float = 60.0, headers: Mapping[str, str] | None = None
    ) -> None:
        self.base = base_url.rstrip("/")
        self.name = display_url(self.base)
        self.client_id = client_id
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._session = None
        self._upload_limit: int | None = None

    async def __aenter__(self) -> ComfyClient:
        aiohttp = _aiohttp()
        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self._timeout)
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._session.close()

    def _down(self, error: BaseException) -> ServerDown:
        return ServerDown(f"{self.name}: {type(error).__name__}")

    async def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        aiohttp = _aiohttp()
        try:
            async with self._session.request(method, self.base + path, **kwargs) as response:
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError) as e:
            raise self._down(e) from None

    async def _expect_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        status, data = await self._request(method, path, **kwargs)
        if status != 200:
            raise ServerDown(f"{self.name}: {method} {path.split('?')[0]} answered {status}")
        return data

    async def queue_ids(self) -> set[str]:
        data = await self._expect_ok("GET", "/queue")
        return {entry[1] for part in ("queue_running", "queue_pending") for entry in data.get(part, [])}

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        data = await self._expect_ok("GET", f"/history/{prompt_id}")
        return data.get(prompt_id) if isinstance(data, dict) else None

    async def submit(self, graph: Mapping[str, Any], prompt_id: str) -> None:
        status, data = await self._request(
            "POST", "/prompt", json={"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
        )
        if status == 200:
            return
        if status == 400 and isinstance(data, dict):
            raise ItemError("the server rejected the prompt: " + describe_rejection(data))
        raise ServerDown(f"{self.name}: POST /prompt answered {status}")

    async def upload_limit(self) -> int:
        """The largest request body the server takes, in bytes: its ``--max-upload-size`` (MB, default 100),
        read from the command line ``/system_stats`` reports."""
        if self._upload_limit is None:
            data = await self._expect_ok("GET", "/system_stats")
            argv = (data.get("system") or {}).get("argv") if isinstance(data, dict) else None
            self._upload_limit = round(_option(argv or [], "--max-upload-size", DEFAULT_MAX_UPLOAD_MB) * (1 << 20))
        return self._upload_limit

    async def upload(self, upload: Any, name: str) -> str:
        """Stream a checked picture (``batch_files.Upload``) into the server's ``input`` folder as ``name``."""
        limit = await self.upload_limit()
        if upload.size + UPLOAD_OVERHEAD > limit:
            raise ItemError(
                f"{upload.path.name} is {upload.size / (1 << 20):.3g} MiB; {self.name} takes uploads up to "
                f"{limit / (1 << 20):.3g} MiB (its --max-upload-size): make the picture smaller or raise that limit"
            )
        aiohttp = _aiohttp()
        with upload.open() as f:
            form = aiohttp.FormData()
            form.add_field("image", f, filename=name, content_type="application/octet-stream")
            form.add_field("overwrite", "true")
            form.add_field("type", "input")
            status, data = await self._request("POST", "/upload/image", data=form)
        if status == 413:
            raise ItemError(
                f"{self.name} refused {upload.path.name} as too large (HTTP 413): raise its --max-upload-size"
            )
        if status >= 500 or status in (401, 403, 407, 429):
            raise ServerDown(f"{self.name}: POST /upload/image answered {status}")
        if status != 200 or not isinstance(data, dict):
            raise ItemError(f"uploading {upload.path.name} failed (HTTP {status})")
        return data["name"] if not data.get("subfolder") else f"{data['subfolder']}/{data['name']}"

    async def fetch(self, filename: str, subfolder: str, kind: str = "output") -> bytes | None:
        """A file the server wrote, or None when it has no such file."""
        status, data = await self._request(
            "GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": kind}
        )
        if status == 404:
            return None
        if status != 200:
            raise ServerDown(f"{self.name}: GET /view answered {status}")
        return data

    async def object_info(self, class_type: str) -> dict[str, Any]:
        data = await self._expect_ok("GET", f"/object_info/{class_type}")
        return data.get(class_type, {}) if isinstance(data, dict) else {}

    async def connect_ws(self):
        aiohttp = _aiohttp()
        url = re.sub(r"^http", "ws", self.base) + f"/ws?clientId={self.client_id}"
        try:
            return await self._session.ws_connect(url, heartbeat=10, max_msg_size=MAX_WS_MESSAGE)
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError) as e:
            raise self._down(e) from None


async def follow_events(
    client: ComfyClient,
    on_event: Callable[[Mapping[str, Any]], None],
    on_change: Callable[[bool], Awaitable[None] | None],
) -> None:
    """Forever: the server's websocket events to ``on_event``; ``on_change(True/False)`` on (re)connect and
    loss, so waiters look again. Cancel the task to stop."""
    aiohttp = _aiohttp()
    while True:
        try:
            ws = await client.connect_ws()
        except ServerDown:
            await asyncio.sleep(0.5)
            continue
        try:
            await _maybe_await(on_change(True))
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    try:
                        event = json.loads(message.data)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(event, dict):
                        on_event(event)
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
        except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            await ws.close()
        await _maybe_await(on_change(False))
        await asyncio.sleep(0.5)


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value


def describe_rejection(data: Mapping[str, Any]) -> str:
    error = data.get("error") or {}
    parts = [error.get("message", "") if isinstance(error, dict) else str(error)]
    for node_id, node in (data.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            parts.append(
                f"node {node_id} {node.get('class_type', '')}: {e.get('message')} {e.get('details', '')}".strip()
            )
    return "; ".join(p for p in parts if p)


def is_finished(entry: Mapping[str, Any] | None) -> bool:
    return entry is not None and (entry.get("status") or {}).get("completed") is not None


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
            return "error", (
                f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_message', '').strip()}"
            )
        if name == "execution_interrupted":
            return "error", "interrupted on the server"
    return "error", f"the server reports {status.get('status_str') or 'no success'}"


async def run_prompt_once(
    server: str,
    graph: Mapping[str, Any],
    progress=None,
    timeout: float = 24 * 3600.0,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Queue one graph outside any batch (e.g. a model download) and return its history entry."""
    prompt_id = str(uuid.uuid4())
    finished = asyncio.Event()

    def on_event(event: Mapping[str, Any]) -> None:
        data = event.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            return
        if event.get("type") == "progress" and progress is not None:
            node = graph.get(str(data.get("node")), {}).get("class_type", "")
            progress.show(f"{node} {data.get('value')}/{data.get('max')}")
        if event.get("type") in FINISHED_EVENTS:
            finished.set()

    async with ComfyClient(server, uuid.uuid4().hex, headers=headers) as client:
        follower = asyncio.create_task(follow_events(client, on_event, lambda up: finished.set()))
        try:
            await client.submit(graph, prompt_id)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                entry = await client.history(prompt_id)
                if is_finished(entry):
                    return entry
                try:
                    await asyncio.wait_for(finished.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
                finished.clear()
            raise TimeoutError(f"the prompt did not finish within {timeout:.0f} s")
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)


def fetch_shipped_workflow(
    server: str, stems: list[str], headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[str, dict[str, Any]] | None:
    """A pack's API workflow from the server's template route (``/api/workflow_templates/<pack>/api/``),
    for a client with no checkout beside it; None when no pack there ships one of ``stems``."""

    def get(path: str) -> Any:
        request = urllib.request.Request(server.rstrip("/") + path, headers=dict(headers or {}))
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    try:
        packs = get("/workflow_templates")
    except (OSError, ValueError) as e:
        log.info("%s: no workflow templates (%s)", display_url(server), type(e).__name__)
        return None
    for stem in stems:
        for pack in sorted(packs) if isinstance(packs, dict) else []:
            path = f"/api/workflow_templates/{urllib.parse.quote(pack)}/api/{urllib.parse.quote(stem)}.json"
            try:
                data = get(path)
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return f"{display_url(server)}{path}", data
    return None
