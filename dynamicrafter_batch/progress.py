"""Progress of a batch across its servers: one line on stderr while it runs, a summary table at the end."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from .items import Result


@dataclass
class ServerStats:
    """What one server did in this run."""

    running: int = 0
    done: int = 0
    failed: int = 0
    busy_since: float | None = None
    """When this run first sent it work (throughput counts from there)."""
    state: str = "up"
    """up | gone (a cluster worker given up)."""

    def per_minute(self, now: float) -> float:
        if self.busy_since is None or now - self.busy_since < 1.0:
            return 0.0
        return self.done * 60.0 / (now - self.busy_since)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02}s"


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, a line per change otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.servers: dict[str, ServerStats] = {}
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_text = ""
        self._last_time = 0.0

    # -- what the runner reports --

    def server(self, name: str) -> ServerStats:
        return self.servers.setdefault(name, ServerStats())

    def started(self, name: str) -> None:
        stats = self.server(name)
        stats.running += 1
        if stats.busy_since is None:
            stats.busy_since = time.monotonic()

    def stopped(self, name: str, outcome: str | None) -> None:
        """An item left the server: ``done``, ``failed``, or None (taken back to run elsewhere)."""
        stats = self.server(name)
        stats.running = max(0, stats.running - 1)
        if outcome == "done":
            stats.done += 1
        elif outcome == "failed":
            stats.failed += 1

    def finished(self, ok: bool) -> None:
        """An item of the batch has its outcome (done here, earlier, or failed)."""
        self.done += 1
        self.failed += not ok

    # -- the line --

    def status(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        running = sum(s.running for s in self.servers.values())
        parts = [f"{self.done - self.failed}/{self.total} done, {running} running, {self.failed} failed"]
        rate = 0.0
        for name, stats in self.servers.items():
            per_minute = stats.per_minute(now)
            rate += per_minute if stats.state == "up" else 0.0
            state = "" if stats.state == "up" else f" {stats.state.upper()}"
            parts.append(f"{_short(name)}{state} {stats.running} run {per_minute:.1f}/min")
        remaining = self.total - self.done
        if remaining and rate > 0:
            parts.append(f"ETA {_duration(remaining * 60.0 / rate)}")
        return " | ".join(parts)

    def show(self, text: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        line = f"[{self.status()}] {text}".rstrip()
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + line[:240])
            self.stream.flush()
        elif force or (line != self._last_text and now - self._last_time >= 1.0):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_time = now
        self._last_text = line

    def message(self, text: str) -> None:
        """A line that stays (an item finished or failed, a server went away)."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def server_summary(self, seconds: float) -> str:
        lines = []
        for name, stats in self.servers.items():
            rate = stats.done * 60.0 / seconds if seconds > 0 else 0.0
            lines.append(
                f"{name}: {stats.done} done, {stats.failed} failed, {rate:.2f} items/min"
                + ("" if stats.state == "up" else f" ({stats.state})")
            )
        return "\n".join(lines)


def _short(name: str) -> str:
    return name.split("://", 1)[-1]


def summary_table(rows: list[Result]) -> str:
    table = [("row", "image", "status", "seconds", "server", "output / error")]
    for r in rows:
        detail = ", ".join(f.name for f in r.files) if r.files else r.error
        if r.note:
            detail += f" ({r.note})"
        seconds = f"{r.seconds:.1f}" if r.seconds else "-"
        table.append(
            (
                str(r.job.item.row),
                r.job.item.label,
                r.status,
                seconds,
                _short(r.server) or "-",
                detail.replace("\n", " ")[:120],
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line[:5], widths)) + "  " + line[5] for line in table]
    lines.insert(1, "-" * max(len(line) for line in lines))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)
