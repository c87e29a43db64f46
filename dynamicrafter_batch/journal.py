"""The batch journal: ``journal.jsonl`` in the output folder, one fsync'd JSON record per line.

Records (``event``): ``batch`` (the websocket client id), ``secret`` (the batch's secret, from which the
prompt ids, upload names and output prefixes the servers see are derived: others cannot predict them),
``reissued`` (the server held someone else's result under the item's id: it gets the next id of its chain),
``claimed`` (an item is about to go to a server, or a cluster worker), ``submitted``, ``requeued`` (a server
lost it), ``released`` (given back by a cluster worker that could not go on), ``done`` and ``failed``.
Items are keyed by their content-derived key; the last ``done``/``failed`` record is an item's outcome and the
last ``claimed``/``submitted`` one names where it went. Journals of older versions read the same: records
without a ``server`` field (an item is then looked for where it goes next), and ``attempt_failed`` ones (an
item then had no server).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; one client per output folder is then up to the user
    fcntl = None

log = logging.getLogger("dynamicrafter.batch")

JOURNAL_NAME = "journal.jsonl"
OUTCOMES = ("done", "failed")


class JournalBusy(RuntimeError):
    """Another client is running a batch into the same output folder."""


def repair(path: Path) -> None:
    """Make the file end on a whole record: a cut-off last line is dropped, a record missing only its
    newline gets one, so the next record never lands on the end of a torn one."""
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        try:
            json.loads(tail)
        except ValueError:
            log.warning(
                "%s: dropping a record cut off mid-write (%d bytes); the item is looked for again", path, len(tail)
            )
            f.truncate(cut)
        else:
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


class Journal:
    """Append-only JSON lines, fsync'd after every record, locked against a second client."""

    def __init__(self, path: Path, writable: bool = True) -> None:
        """``writable=False`` only reads what is there (``--dry-run``): no lock, no repair, no new file."""
        self.path = path
        self._file = None
        if writable:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a+", encoding="utf-8")
            if fcntl is not None:
                try:
                    fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    self._file.close()
                    raise JournalBusy(
                        f"another batch client is writing {path}; wait for it or use another --out"
                    ) from None
            repair(path)
        self.records: list[dict[str, Any]] = []
        self._by_item: dict[str, list[dict[str, Any]]] = {}
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                self._remember(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping damaged line %d", path, number)

    def _remember(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if "item" in record:
            self._by_item.setdefault(record["item"], []).append(record)

    def client_id(self) -> str:
        """The websocket client id of this batch: kept across restarts, so events of queued items reach us."""
        for record in self.records:
            if record.get("event") == "batch":
                return record["client_id"]
        client_id = uuid.uuid4().hex
        self.write("batch", client_id=client_id)
        return client_id

    def secret(self) -> str:
        """The batch's secret: kept in the journal, so a resumed run finds its items under the same ids."""
        for record in self.records:
            if record.get("event") == "secret":
                return record["secret"]
        secret = secrets.token_hex(32)
        if self._file is not None:
            self.write("secret", secret=secret)
        return secret

    def prompt_id(self, key: str) -> str | None:
        """The prompt id the item was last claimed, sent or reissued under (old journals: the key-derived
        one they used), or None when it has none yet."""
        for record in reversed(self.history(key)):
            prompt_id = record.get("prompt_id")
            if isinstance(prompt_id, str):
                try:
                    return str(uuid.UUID(prompt_id))
                except ValueError:
                    continue
        return None

    def history(self, key: str) -> list[dict[str, Any]]:
        return self._by_item.get(key, [])

    def last(self, key: str) -> dict[str, Any] | None:
        """The item's last outcome record (done or failed), if any."""
        return next((r for r in reversed(self.history(key)) if r.get("event") in OUTCOMES), None)

    def earlier_files(self, key: str, out_dir: Path) -> list[Path] | None:
        """The files an earlier run made for the item, when its last outcome is done and all are still there."""
        previous = self.last(key)
        if not previous or previous["event"] != "done":
            return None
        files = [out_dir / name for name in previous.get("files", [])]
        return files if files and all(f.is_file() for f in files) else None

    def submitted(self, key: str) -> bool:
        """Whether the item was sent to a server before (by this run or an earlier one)."""
        return any(r.get("event") == "submitted" for r in self.history(key))

    def home(self, key: str) -> str | None:
        """The server an unfinished item was last claimed for or sent to ("" when an old journal does not
        say which); None when it is with no server (never sent, released, or failed there)."""
        for record in reversed(self.history(key)):
            event = record.get("event")
            if event in OUTCOMES or event in ("released", "attempt_failed"):
                return None
            if event in ("claimed", "submitted"):
                return record.get("server", "")
        return None

    def write(self, event: str, **data: Any) -> None:
        record = {"time": round(time.time(), 3), "event": event, **data}
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._remember(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
