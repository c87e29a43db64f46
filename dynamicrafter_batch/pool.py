"""The servers of a batch: where they are, how many items each takes at once, and whether each is usable.

A servers file has one server a line: its URL, then optional ``concurrency=N`` and ``header.NAME=VALUE``
words (shell quoting; ``${VAR}`` in a value is read from the environment, so a token need not be in
the file). Header values never appear in any message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .http_client import ComfyClient, ServerDown, display_url

log = logging.getLogger("dynamicrafter.batch")

BAD_SERVER_LIMIT = 2
"""Items that failed on a server and then ran on another: this many and the server is set aside."""


@dataclass
class Options:
    concurrency: int = 2
    """Items queued on each server at once (a servers file may set its own)."""
    poll: float = 2.0
    """Seconds between checks of an item on its server (events wake it sooner)."""
    server_wait: float = 600.0
    """A server away longer than this is set aside; the batch stops when none is left."""
    reassign_after: float = 60.0
    """How long an item waits for its dead server to come back before it goes elsewhere."""
    retry_failed: bool = False


class ServerListError(ValueError):
    """A --server / --servers-file entry that cannot be used."""


@dataclass(frozen=True)
class ServerSpec:
    url: str
    concurrency: int
    headers: dict[str, str] = field(default_factory=dict, hash=False, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The address as shown and journaled: without a user:password part."""
        return display_url(self.url)

    def __repr__(self) -> str:
        return f"ServerSpec({self.name!r}, concurrency={self.concurrency})"


def _expand(value: str, where: str) -> str:
    def variable(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ServerListError(f"{where}: the environment variable {name} is not set")
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", variable, value)


def _check_url(url: str, where: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ServerListError(f"{where}: {display_url(url)!r} is not a server address (http://host:port)")
    return url.rstrip("/")


def parse_servers_file(path: Path, concurrency: int) -> list[ServerSpec]:
    specs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise ServerListError(f"{where}: {e}") from None
        if not words:
            continue
        url, headers, count = _check_url(words[0], where), {}, concurrency
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if key == "concurrency" and value.isdigit() and int(value) > 0:
                count = int(value)
            elif key.startswith("header.") and sep and len(key) > 7:
                headers[key[7:]] = _expand(value, where)
            else:
                raise ServerListError(f"{where}: expected concurrency=N or header.NAME=VALUE, got {key!r}")
        specs.append(ServerSpec(url, count, headers))
    return specs


def server_specs(
    urls: list[str], servers_file: Path | None, concurrency: int, headers: dict[str, str] | None = None
) -> list[ServerSpec]:
    """The batch's servers, each once (``headers`` go to the --server ones)."""
    specs = [ServerSpec(_check_url(u, "--server"), concurrency, dict(headers or {})) for u in urls]
    if servers_file is not None:
        specs += parse_servers_file(servers_file, concurrency)
    unique: dict[str, ServerSpec] = {}
    for spec in specs:
        unique.setdefault(spec.url, spec)
    if not unique:
        raise ServerListError("no server: give --server URL (repeatable) or --servers-file FILE")
    return list(unique.values())


class ServerState:
    """One server during the run: its client, health, and the items found waiting on it."""

    def __init__(self, spec: ServerSpec, client: ComfyClient) -> None:
        self.spec = spec
        self.client = client
        self.up = True
        self.down_since: float | None = None
        self.bad_items = 0
        self.set_aside: str | None = None
        self.resume: deque = deque()
        """Jobs an earlier run sent here: looked for here before anything else is sent."""
        self.jobs: dict[str, Any] = {}
        """prompt_id -> job being driven here now."""
        self._queue_cache: tuple[float, set[str]] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def usable(self) -> bool:
        return self.set_aside is None

    def mark_down(self, reason: ServerDown) -> bool:
        """True when this is news (the server was up)."""
        self._queue_cache = None
        if not self.up:
            return False
        self.up, self.down_since = False, time.monotonic()
        log.info("%s is unreachable (%s)", self.name, reason)
        return True

    def mark_up(self) -> bool:
        if self.up:
            return False
        self.up, self.down_since = True, None
        return True

    async def wait_back(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a server that went away (the watcher marks it up); whether it is back."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.usable and not self.up:
            await asyncio.sleep(0.5)
        return self.up and self.usable

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    async def queue_ids(self) -> set[str]:
        """The server's queue, read at most every 0.3 s (all of its items share one answer)."""
        now = time.monotonic()
        if self._queue_cache is None or now - self._queue_cache[0] > 0.3:
            self._queue_cache = (now, await self.client.queue_ids())
        return self._queue_cache[1]

    def forget_queue(self) -> None:
        self._queue_cache = None

    async def probe(self) -> bool:
        """Whether the server answers now."""
        try:
            await self.client.queue_ids()
        except ServerDown:
            return False
        return True


async def sleep_or_wake(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    event.clear()
