"""A cluster worker: the Ray actor that owns one ComfyUI (or talks to one that already runs) and renders items.

The driver (``cluster``) wraps :class:`ComfyWorker` with ``ray.remote``; this module imports no Ray. A worker
that owns its server starts ComfyUI on its own machine, in the actor's process group (Ray cleans that group
up when the actor dies, so a dead worker never leaves a server holding a GPU), and starts it again when it
ends. Its folders (``work_dir``) outlive the actor, so a restarted worker finds the outputs its predecessor's
server finished. The reply of :meth:`ComfyWorker.render` carries the journal events and the output bytes:
the driver, the only writer of the journal, records them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .comfy_process import ComfyProcess, free_port, server_folders
from .http_client import ItemError, ServerDown
from .items import Job
from .link import ServerGone, ServerLink
from .outputs import fetch_outputs
from .render import render

log = logging.getLogger("dynamicrafter.batch")

STATE_FILE = "worker.json"
"""In a worker's folder: its actor's and its server's process ids, address and host (for people and tests)."""


@dataclass
class WorkerSpec:
    """What one worker renders on: its own ComfyUI (``comfyui`` set) or an existing server (``url`` set)."""

    name: str
    """Stable across runs (``worker-N``, or the server's address): the journal names it as the item's home."""
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    comfyui: str | None = None
    """The ComfyUI folder on the worker's machine (the pack in its custom_nodes, the models in its folders)."""
    comfyui_args: list[str] = field(default_factory=list)
    """More ``main.py`` options (e.g. ``--extra-model-paths-config FILE``, ``--highvram``)."""
    work_dir: str = ""
    """The own server's input, output, temp and user folders and its log, on the worker's machine."""
    poll: float = 2.0
    server_wait: float = 600.0
    start_timeout: float = 600.0


class OwnedServerLink(ServerLink):
    """The link of a worker that owns its server: a server that ended is started again, not waited for."""

    def __init__(
        self,
        process: ComfyProcess,
        client_id: str,
        server_wait: float,
        start_timeout: float,
        on_start: Callable[[], None],
    ) -> None:
        super().__init__(process.url, client_id, server_wait=server_wait)
        self.process = process
        self.start_timeout = start_timeout
        self.on_start = on_start
        self._restarting = asyncio.Lock()

    async def recover(self, error: ServerDown) -> None:
        async with self._restarting:
            if await self.answers():
                return  # another item of this worker restarted it meanwhile
            if self.process.alive():
                try:
                    return await super().recover(error)  # busy or stuck: it may answer again
                except ServerGone:
                    log.warning("%s is alive but did not answer for %.0f s: killed", self.name, self.server_wait)
                    self.process.kill()
            log.warning("the ComfyUI of this worker ended (%s); starting it again", error)
            await asyncio.to_thread(start_server, self.process, self.start_timeout)
            self.on_start()
            self.forget_queue()
            self.up = True


def start_server(process: ComfyProcess, timeout: float) -> None:
    process.start()
    process.wait_ready(timeout)


class ComfyWorker:
    """One worker of a cluster batch (a Ray actor: ``ray.remote(ComfyWorker)``)."""

    def __init__(self, spec: WorkerSpec, client_id: str, use_gpu: bool) -> None:
        self.spec = spec
        self.client_id = client_id
        self.use_gpu = use_gpu
        self.process: ComfyProcess | None = None
        self.link: ServerLink | None = None
        self._starting = asyncio.Lock()

    async def _ready(self) -> ServerLink:
        """The link to the worker's server, started on first use (and after every actor restart)."""
        async with self._starting:
            if self.link is None:
                if self.spec.url is None:
                    link = await asyncio.to_thread(self._own_server)
                else:
                    link = ServerLink(self.spec.url, self.client_id, self.spec.headers, self.spec.server_wait)
                self.link = await link.__aenter__()
        return self.link

    def _own_server(self) -> ServerLink:
        work = Path(self.spec.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        self.process = ComfyProcess(
            Path(self.spec.comfyui),
            work / "comfyui.log",
            folder_args=server_folders(work),
            port=free_port(),
            cpu=not self.use_gpu,
            extra_args=self.spec.comfyui_args,
            own_group=False,
        )
        start_server(self.process, self.spec.start_timeout)
        self._write_state()
        return OwnedServerLink(
            self.process, self.client_id, self.spec.server_wait, self.spec.start_timeout, self._write_state
        )

    def _write_state(self) -> None:
        Path(self.spec.work_dir, STATE_FILE).write_text(json.dumps(self.describe()), encoding="utf-8")

    def describe(self) -> dict[str, Any]:
        """Where this worker is: host, actor process, server address and process."""
        return {
            "name": self.spec.name,
            "host": socket.gethostname(),
            "actor_pid": os.getpid(),
            "server_pid": self.process.process.pid if self.process and self.process.process else None,
            "url": self.process.url if self.process else self.spec.url,
            "work_dir": self.spec.work_dir,
        }

    async def render(self, job: Job, sent_before: bool) -> dict[str, Any]:
        """Render ``job`` on this worker's server. The reply: ``status`` done (with ``outputs``: extension and
        bytes of each file, and ``found``), failed or gone (with ``error``); ``events`` for the journal; the
        ``prompt_id`` the item ended under."""
        events: list[dict[str, Any]] = []

        def record(event: str, **data: Any) -> None:
            events.append({"event": event, **data})

        reply: dict[str, Any] = {"events": events}
        try:
            link = await self._ready()
            rendered = await render(job, link, self.spec.poll, record, sent_before)
            reply |= {
                "status": "done",
                "found": rendered.found,
                "outputs": await fetch_outputs(link.client, rendered.files),
            }
        except ItemError as e:
            reply |= {"status": "failed", "error": str(e)}
        except (ServerGone, RuntimeError, TimeoutError, OSError) as e:
            reply |= {"status": "gone", "error": f"worker {self.spec.name}: {e}".splitlines()[0]}
        return reply | {"prompt_id": job.prompt_id}

    async def stop(self) -> None:
        """Stop the worker's own server (the driver calls this when the batch ends)."""
        if self.link is not None:
            await self.link.__aexit__(None, None, None)
            self.link = None
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)
