"""Runs a batch's jobs on one or many ComfyUI servers, so that every item is made exactly once.

Each server takes up to its concurrency of items. An item is claimed in the journal (with the server)
before it is sent, under a prompt id derived from its content, so a restarted client looks for it where
it went before anything is sent again: in that server's queue (follow it), its ``/history`` (download
the outputs), or as a complete output file under the item's prefix (a restarted server forgets its
history). An item whose server dies waits for it (``reassign_after`` seconds) and is looked for there
when it returns; found nowhere, or the server still away, it goes to whichever server is free. A server
away longer than ``server_wait``, or whose failed items then run elsewhere, is set aside; the batch
finishes on the rest and stops (resumable) only when no server is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .graph import set_image
from .http_client import FINISHED_EVENTS, ComfyClient, ItemError, ServerDown, follow_events
from .items import Job, Result
from .journal import JOURNAL_NAME, Journal
from .outputs import locate, save_outputs
from .pool import BAD_SERVER_LIMIT, Options, ServerSpec, ServerState, sleep_or_wake
from .progress import Progress

log = logging.getLogger("dynamicrafter.batch")


class Released(Exception):
    """The item leaves its server (died, lost it, or failed there): another one takes it."""


class BatchRunner:
    """See the module docstring."""

    def __init__(
        self, servers: list[ServerSpec], out_dir: Path, options: Options | None = None, progress: Progress | None = None
    ) -> None:
        self.specs = servers
        self.out_dir = Path(out_dir)
        self.options = options or Options()
        self.progress = progress
        self.journal = Journal(self.out_dir / JOURNAL_NAME)
        self.servers: list[ServerState] = []
        self.pool: list[Job] = []
        self._unplaced: list[Job] = []
        self.results: dict[str, Result] = {}
        self._total = 0
        self._changed = asyncio.Event()
        self._wake: dict[str, asyncio.Event] = {}
        self._started: dict[str, float] = {}

    # -- entry point ---------------------------------------------------------------------------

    async def run(self, jobs: list[Job]) -> list[Result]:
        unique: dict[str, Job] = {}
        for job in jobs:
            if job.key in unique:
                log.warning("row %s repeats row %s exactly: it runs once", job.item.row, unique[job.key].item.row)
            unique.setdefault(job.key, job)
        self._total = len(unique)
        self.progress = self.progress or Progress(len(unique))
        self.progress.total = len(unique)
        started = time.monotonic()
        try:
            async with contextlib.AsyncExitStack() as stack:
                client_id = self.journal.client_id()
                secret = self.journal.secret()
                for job in unique.values():
                    if job.error is None:
                        job.bind(secret, self.journal.prompt_id(job.key))
                for spec in self.specs:
                    client = await stack.enter_async_context(ComfyClient(spec.url, client_id, headers=spec.headers))
                    self.servers.append(ServerState(spec, client))
                    self.progress.server(spec.name)
                for job in unique.values():
                    self._place(job)
                await self._find_unplaced()
                await self._run_servers()
        finally:
            self.journal.close()
        for job in unique.values():
            if job.key not in self.results:
                reason = self._stop_reason()
                self.results[job.key] = Result(job, "not run", error=reason)
        self.progress.message(self.progress.server_summary(time.monotonic() - started))
        return [self.results[job.key] for job in jobs]

    def _place(self, job: Job) -> None:
        """An earlier outcome, the server an earlier run sent it to, or the pool."""
        previous = self.journal.last(job.key)
        files = self.journal.earlier_files(job.key, self.out_dir)
        if files:
            return self._finish(Result(job, "done", files, note="earlier run", server=previous.get("server", "")))
        if previous and previous["event"] == "failed" and not self.options.retry_failed:
            return self._finish(Result(job, "skipped", error=previous.get("error", ""), note="failed earlier"))
        if job.error:
            self.journal.write("failed", item=job.key, row=job.item.row, image=str(job.item.image), error=job.error)
            return self._finish(Result(job, "failed", error=job.error))
        home = self.journal.home(job.key)
        state = next((s for s in self.servers if s.name == home), None)
        if state is not None:
            state.resume.append(job)
        elif home == "":
            self._unplaced.append(job)
        else:
            if home is not None:
                log.warning(
                    "row %s was sent to %s, which is not among this run's servers: it is sent again", job.item.row, home
                )
            self.pool.append(job)
        return None

    async def _find_unplaced(self) -> None:
        """Items a single-server journal sent without naming the server: looked for on every server that
        answers; found queued, a server follows it; finished, its outputs are fetched; else it is pooled."""
        for job in self._unplaced:
            for state in self.servers:
                if not state.up:
                    continue
                try:
                    where, _ = await locate(job, state)
                except ServerDown as e:
                    self._server_down(state, e)
                    continue
                if where != "absent":
                    self.journal.write("claimed", item=job.key, prompt_id=job.prompt_id, server=state.name)
                    state.resume.append(job)
                    break
            else:
                self.pool.append(job)

    async def _run_servers(self) -> None:
        tasks = []
        for state in self.servers:
            tasks.append(asyncio.create_task(self._watch(state)))
            tasks.append(asyncio.create_task(follow_events(state.client, self._on_event, self._on_socket(state))))
            tasks += [asyncio.create_task(self._slot(state)) for _ in range(state.spec.concurrency)]
        try:
            while not self._all_done() and any(s.usable for s in self.servers):
                await sleep_or_wake(self._changed, 1.0)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _all_done(self) -> bool:
        return len(self.results) >= self._total

    def _stop_reason(self) -> str:
        reasons = "; ".join(f"{s.name}: {s.set_aside}" for s in self.servers if s.set_aside)
        return f"no server left ({reasons}); run the same command again to resume"

    # -- servers -------------------------------------------------------------------------------

    async def _watch(self, state: ServerState) -> None:
        """Brings a server back when it answers again; sets it aside when it stays away too long."""
        while state.usable:
            if not state.up:
                if await state.probe():
                    state.mark_up()
                    self.progress.message(f"server {state.name} is back")
                    self._wake_server(state)
                elif state.down_for() > self.options.server_wait:
                    self._set_aside(state, f"unreachable for {self.options.server_wait:.0f} s")
            await asyncio.sleep(min(1.0, self.options.poll))

    def _on_socket(self, state: ServerState):
        def changed(connected: bool) -> None:
            self._wake_server(state)  # (re)connected or lost: its items look again

        return changed

    def _server_down(self, state: ServerState, error: ServerDown) -> None:
        if state.mark_down(error):
            self.progress.message(
                f"server {state.name} went away; its items wait up to "
                f"{self.options.reassign_after:.0f} s for it, then go elsewhere"
            )
            self._changed.set()

    def _set_aside(self, state: ServerState, reason: str) -> None:
        if state.set_aside:
            return
        state.set_aside = reason
        self.progress.server(state.name).state = "set aside"
        self.progress.message(f"server {state.name} set aside: {reason}; the batch goes on without it")
        while state.resume:
            self._release(state.resume.popleft(), state, "its server was set aside")
        self._wake_server(state)
        self._changed.set()

    def _wake_server(self, state: ServerState) -> None:
        state.forget_queue()
        self.progress.server(state.name).state = state.set_aside and "set aside" or ("up" if state.up else "down")
        for prompt_id in state.jobs:
            self._wake[prompt_id].set()
        self._changed.set()

    # -- slots: one item at a time on one server -----------------------------------------------

    async def _slot(self, state: ServerState) -> None:
        while state.usable and not self._all_done():
            if not state.up:
                if state.resume and state.down_for() > self.options.reassign_after:
                    while state.resume:
                        self._release(state.resume.popleft(), state, "its server did not come back in time")
                await sleep_or_wake(self._changed, 0.5)
                continue
            job = state.resume.popleft() if state.resume else self._take(state)
            if job is None:
                await sleep_or_wake(self._changed, 0.5)
                continue
            await self._serve(job, state)

    def _take(self, state: ServerState) -> Job | None:
        """The first pooled job this server may run: not one that failed here while others could try it."""
        others = [s.name for s in self.servers if s.usable and s is not state]
        for job in self.pool:
            tried = self.journal.failed_on(job.key)
            if state.name not in tried or not set(others) - tried:
                self.pool.remove(job)
                return job
        return None

    def _release(self, job: Job, state: ServerState, reason: str) -> None:
        self.journal.write("released", item=job.key, server=state.name, reason=reason)
        if job.key not in self.results and job not in self.pool:
            self.pool.insert(0, job)  # it has waited longest
        self._changed.set()

    async def _serve(self, job: Job, state: ServerState) -> None:
        self._wake[job.prompt_id] = asyncio.Event()
        state.jobs[job.prompt_id] = job
        self._started.setdefault(job.key, time.monotonic())
        self.progress.started(state.name)
        outcome = None
        tried = self.journal.failed_on(job.key)
        try:
            result = await self._drive(job, state)
            outcome = result.status
            self._finish(result)
            self._blame(tried - {state.name})
        except Released as why:
            self._release(job, state, str(why))
        except ItemError as e:
            outcome = "failed"
            self._item_failed(job, state, str(e))
        finally:
            state.jobs.pop(job.prompt_id, None)
            self._wake.pop(job.prompt_id, None)
            self.progress.stopped(state.name, outcome)

    def _item_failed(self, job: Job, state: ServerState, error: str) -> None:
        """A first failure sends the item to another server (once); a second one is its outcome."""
        if not self.journal.failed_on(job.key) and any(s.usable and s is not state for s in self.servers):
            self.journal.write("attempt_failed", item=job.key, server=state.name, error=error)
            self.progress.message(f"row {job.item.row} failed on {state.name} ({error}); another server tries it")
            self.pool.append(job)
            self._changed.set()
            return
        self.journal.write(
            "failed", item=job.key, row=job.item.row, image=str(job.item.image), error=error, server=state.name
        )
        self._finish(Result(job, "failed", error=error, server=state.name))

    def _blame(self, failed_there: set[str]) -> None:
        """An item that failed on these servers ran on another: the servers, not the item, are at fault."""
        for state in self.servers:
            if state.name in failed_there:
                state.bad_items += 1
                if state.bad_items >= BAD_SERVER_LIMIT:
                    self._set_aside(state, f"{state.bad_items} items failed there and then ran on other servers")

    def _finish(self, result: Result) -> None:
        key = result.job.key
        if key in self._started:
            result.seconds = time.monotonic() - self._started[key]
        self.results[key] = result
        self.progress.finished(result.status == "done")
        label = f"{result.job.item.row}: {result.job.item.label}"
        if result.status == "done":
            self.progress.message(
                f"done    {label} -> {', '.join(str(f) for f in result.files)}"
                + (f" ({result.note})" if result.note else "")
            )
        else:
            self.progress.message(f"{result.status:7} {label}: {result.error}")
        self._changed.set()

    # -- one item on one server ----------------------------------------------------------------

    async def _drive(self, job: Job, state: ServerState) -> Result:
        """Locate the item on the server; submit only when it is nowhere; wait; fetch its outputs."""
        url = state.name
        sent_here = self.journal.home(job.key) == url
        if not sent_here:
            self.journal.write("claimed", item=job.key, prompt_id=job.prompt_id, server=url)
        submitted = False
        sent_before = self.journal.submitted(job.key)
        while True:
            try:
                where, detail = await locate(job, state)
                if where == "done":
                    files = await save_outputs(state.client, detail, self.out_dir, job.local_stem())
                    self.journal.write(
                        "done",
                        item=job.key,
                        prompt_id=job.prompt_id,
                        row=job.item.row,
                        image=str(job.item.image),
                        files=[f.name for f in files],
                        server=url,
                    )
                    return Result(job, "done", files, note="" if submitted else "found on the server", server=url)
                if where == "error":
                    raise ItemError(detail)
                if where == "foreign":
                    self._reissue(job, state)
                    submitted, sent_before = False, False
                    continue
                if where == "absent":
                    if submitted:
                        raise Released("the server lost it (restarted?)")
                    if sent_before:
                        log.info("row %s: not on %s; sending it again", job.item.row, state.name)
                        self.journal.write("requeued", item=job.key, prompt_id=job.prompt_id, server=url)
                    submitted = True  # from here the server may hold it, even if the answer is lost
                    await self._submit(job, state)
                await sleep_or_wake(self._wake[job.prompt_id], self.options.poll)
            except ServerDown as e:
                self._server_down(state, e)
                if not submitted and not sent_here:
                    raise Released("its server is unreachable (nothing was sent there)") from None
                if not await state.wait_back(self.options.reassign_after):
                    raise Released("its server died and did not come back in time") from None

    def _reissue(self, job: Job, state: ServerState) -> None:
        """The server holds someone else's result under the item's id: never taken; a fresh id renders it anew."""
        old = job.prompt_id
        job.bind(self.journal.secret(), str(uuid.uuid4()))
        self.journal.write("reissued", item=job.key, prompt_id=job.prompt_id, server=state.name, was=old)
        self.progress.message(
            f"row {job.item.row}: someone else's result under this id on {state.name} (a different graph): "
            "not taken; rendered again under a fresh id"
        )
        state.jobs[job.prompt_id] = state.jobs.pop(old, job)
        self._wake[job.prompt_id] = self._wake.pop(old, asyncio.Event())

    async def _submit(self, job: Job, state: ServerState) -> None:
        name = await state.client.upload(job.upload, job.upload_name)
        if name != job.upload_name:
            set_image(job.graph, name)
        await state.client.submit(job.graph, job.prompt_id)
        state.forget_queue()
        self.journal.write(
            "submitted",
            item=job.key,
            prompt_id=job.prompt_id,
            row=job.item.row,
            image=str(job.item.image),
            workflow=job.workflow,
            server=state.name,
        )
        self.progress.show(f"queued row {job.item.row} on {state.name}")

    # -- events --------------------------------------------------------------------------------

    def _on_event(self, message: Mapping[str, Any]) -> None:
        """Websocket events -> progress line, and wake the item a finished prompt belongs to."""
        kind, data = message.get("type"), message.get("data") or {}
        prompt_id = data.get("prompt_id")
        job = next((s.jobs[prompt_id] for s in self.servers if prompt_id in s.jobs), None)
        if job is None:
            return
        if kind == "progress":
            node = job.graph.get(str(data.get("node")), {}).get("class_type", data.get("node"))
            self.progress.show(
                f"row {job.item.row}: {node} {data.get('value')}/{data.get('max')}",
                force=data.get("value") == data.get("max"),
            )
        elif kind in FINISHED_EVENTS or (kind == "executing" and data.get("node") is None):
            self._wake[prompt_id].set()
