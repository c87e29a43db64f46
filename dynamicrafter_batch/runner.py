"""Runs a batch on one ComfyUI server, so that every item is made exactly once (no engine needed).

The server takes up to ``concurrency`` items at once. Each item is claimed in the journal before it is
sent and rendered by :func:`render.render`, which looks for it before sending anything: kill the client or
the server, start again, and nothing is made twice. A server away longer than ``server_wait`` stops the
batch (resumable). Several servers, or a cluster, are the engine's job: :mod:`cluster`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .http_client import ItemError
from .items import Job, Result
from .ledger import Ledger
from .link import ServerGone, ServerLink
from .outputs import save_outputs
from .progress import Progress
from .render import render
from .servers import ServerSpec

log = logging.getLogger("dynamicrafter.batch")


@dataclass
class Options:
    concurrency: int = 2
    """Items queued on each server at once (a servers file may set its own)."""
    poll: float = 2.0
    """Seconds between checks of an item on its server (events wake it sooner)."""
    server_wait: float = 600.0
    """How long a server may stay away before its items give up on it."""
    retry_failed: bool = False


class BatchRunner:
    """See the module docstring."""

    def __init__(
        self, server: ServerSpec, out_dir: Path, options: Options | None = None, progress: Progress | None = None
    ) -> None:
        self.spec = server
        self.out_dir = Path(out_dir)
        self.options = options or Options()
        self.progress = progress or Progress(0)
        self._rendering: dict[str, Job] = {}

    async def run(self, jobs: list[Job]) -> list[Result]:
        ledger = Ledger(self.out_dir, self.progress, self.options.retry_failed)
        stop_reason = "the batch stopped; run the same command again to resume"
        try:
            queue = deque(ledger.open(jobs))
            self.progress.server(self.spec.name)
            if queue:
                link = ServerLink(
                    self.spec.url, ledger.client_id, self.spec.headers, self.options.server_wait, self._on_step
                )
                async with link:
                    slots = [asyncio.create_task(self._slot(queue, link, ledger)) for _ in range(self.spec.concurrency)]
                    try:
                        await asyncio.gather(*slots)
                    except ServerGone as gone:
                        stop_reason = f"{gone}; run the same command again to resume"
                        self.progress.message(f"the batch stops: {stop_reason}")
                    finally:
                        for slot in slots:
                            slot.cancel()
                        await asyncio.gather(*slots, return_exceptions=True)
        finally:
            results = ledger.close(jobs, stop_reason)
        return results

    async def _slot(self, queue: deque[Job], link: ServerLink, ledger: Ledger) -> None:
        while queue:
            job = queue.popleft()
            home = ledger.home(job)
            if home not in (None, "", link.name):
                log.warning(
                    "row %s was sent to %s, which is not this run's server: it is sent again", job.item.row, home
                )
            ledger.claim(job, link.name)
            self.progress.started(link.name)
            self._rendering[job.prompt_id] = job
            outcome = None
            try:
                sent_before = ledger.journal.submitted(job.key)
                rendered = await render(job, link, self.options.poll, ledger.record, sent_before)
                files = await save_outputs(link.client, rendered.files, self.out_dir, job.local_stem())
                ledger.done(job, files, link.name, rendered.found)
                outcome = "done"
            except ItemError as e:
                ledger.failed(job, str(e), link.name)
                outcome = "failed"
            finally:
                self._rendering.pop(job.prompt_id, None)
                self.progress.stopped(link.name, outcome)

    def _on_step(self, prompt_id: str, data: Mapping[str, Any]) -> None:
        job = self._rendering.get(prompt_id)
        if job is None:
            return
        node = job.graph.get(str(data.get("node")), {}).get("class_type", data.get("node"))
        self.progress.show(
            f"row {job.item.row}: {node} {data.get('value')}/{data.get('max')}",
            force=data.get("value") == data.get("max"),
        )
