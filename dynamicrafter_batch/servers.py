"""The servers of a batch: where they are and how many items each takes at once.

A servers file has one server a line: its URL, then optional ``concurrency=N`` and ``header.NAME=VALUE``
words (shell quoting; ``${VAR}`` in a value is read from the environment, so a token need not be in
the file). Header values never appear in any message.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .http_client import display_url


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
