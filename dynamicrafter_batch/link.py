"""One ComfyUI server as an item sees it: its HTTP client, its queue (read once for all the items on it), wake-ups
from its websocket, and what to do when it stops answering.

A :class:`ServerLink` waits for a server it does not own to come back (``server_wait`` seconds, then
:class:`ServerGone`). A cluster worker that owns its server starts it again instead (``cluster_worker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .http_client import FINISHED_EVENTS, ComfyClient, ServerDown, follow_events

log = logging.getLogger("dynamicrafter.batch")

StepReport = Callable[[str, Mapping[str, Any]], None]
"""``(prompt_id, progress event data)``: a sampler step of an item, for a progress line."""


class ServerGone(Exception):
    """The server stayed away longer than the batch waits for it: its items go back (elsewhere, or a later run)."""


class ServerLink:
    """A server's client and the state its items share. Use as ``async with``: it follows the websocket."""

    def __init__(
        self,
        url: str,
        client_id: str,
        headers: Mapping[str, str] | None = None,
        server_wait: float = 600.0,
        on_step: StepReport | None = None,
    ) -> None:
        self.client = ComfyClient(url, client_id, headers=headers)
        self.server_wait = server_wait
        self.on_step = on_step
        self.up = True
        self._wake: dict[str, asyncio.Event] = {}
        self._queue_cache: tuple[float, set[str]] | None = None
        self._follower: asyncio.Task | None = None

    @property
    def name(self) -> str:
        """The address as shown and journaled: without a user:password part."""
        return self.client.name

    async def __aenter__(self) -> ServerLink:
        await self.client.__aenter__()
        self._follower = asyncio.create_task(follow_events(self.client, self._on_event, self._on_socket))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        await self.client.__aexit__(*exc)

    # -- waiting for an item ---------------------------------------------------------------------

    def wake_event(self, prompt_id: str) -> asyncio.Event:
        return self._wake.setdefault(prompt_id, asyncio.Event())

    def forget(self, prompt_id: str) -> None:
        self._wake.pop(prompt_id, None)

    async def wait(self, prompt_id: str, seconds: float) -> None:
        """Until the item's prompt finishes (an event says so), the socket changes, or ``seconds`` pass."""
        event = self.wake_event(prompt_id)
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        event.clear()

    def _on_event(self, message: Mapping[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        prompt_id = data.get("prompt_id")
        if prompt_id not in self._wake:
            return
        if kind == "progress" and self.on_step is not None:
            self.on_step(prompt_id, data)
        elif kind in FINISHED_EVENTS or (kind == "executing" and data.get("node") is None):
            self._wake[prompt_id].set()

    def _on_socket(self, connected: bool) -> None:
        """(Re)connected or lost: every item looks again."""
        self._queue_cache = None
        for event in self._wake.values():
            event.set()

    # -- the server's state ----------------------------------------------------------------------

    async def queue_ids(self) -> set[str]:
        """The server's queue, read at most every 0.3 s (all of its items share one answer)."""
        now = time.monotonic()
        if self._queue_cache is None or now - self._queue_cache[0] > 0.3:
            self._queue_cache = (now, await self.client.queue_ids())
        return self._queue_cache[1]

    def forget_queue(self) -> None:
        self._queue_cache = None

    async def answers(self) -> bool:
        try:
            await self.client.queue_ids()
        except ServerDown:
            return False
        return True

    async def recover(self, error: ServerDown) -> None:
        """The server stopped answering: return once it answers again, or raise :class:`ServerGone`."""
        self.forget_queue()
        if self.up:
            log.warning("%s is unreachable (%s); waiting up to %.0f s for it", self.name, error, self.server_wait)
        self.up = False
        deadline = time.monotonic() + self.server_wait
        while time.monotonic() < deadline:
            if await self.answers():
                self.up = True
                log.warning("%s answers again", self.name)
                return
            await asyncio.sleep(0.5)
        raise ServerGone(f"{self.name} did not answer for {self.server_wait:.0f} s")
