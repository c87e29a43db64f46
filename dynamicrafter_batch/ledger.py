"""What became of each item of a batch: the journal (the record that survives any crash), the results of this
run and the progress line. Shared by the single-server runner and the cluster driver, which differ only in
where an item is rendered."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .items import Job, Result
from .journal import JOURNAL_NAME, Journal
from .progress import Progress

log = logging.getLogger("dynamicrafter.batch")


class Ledger:
    """The batch's journal in ``out_dir`` (locked: one client per folder) and this run's outcomes."""

    def __init__(self, out_dir: Path, progress: Progress, retry_failed: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.retry_failed = retry_failed
        self.journal = Journal(self.out_dir / JOURNAL_NAME)
        self.results: dict[str, Result] = {}
        self._started: dict[str, float] = {}
        self._opened = time.monotonic()

    def open(self, jobs: list[Job]) -> list[Job]:
        """Bind every job to the batch's ids and settle what an earlier run settled; returns the jobs left to
        render, each once, those an earlier run sent somewhere first (they are looked for there)."""
        unique: dict[str, Job] = {}
        for job in jobs:
            if job.key in unique:
                log.warning("row %s repeats row %s exactly: it runs once", job.item.row, unique[job.key].item.row)
            unique.setdefault(job.key, job)
        self.progress.total = len(unique)
        self.client_id = self.journal.client_id()
        secret = self.journal.secret()
        pending = []
        for job in unique.values():
            if job.error is None:
                job.bind(secret, self.journal.prompt_id(job.key))
            if not self._settled(job):
                pending.append(job)
        pending.sort(key=lambda job: self.journal.home(job.key) is None)
        return pending

    def _settled(self, job: Job) -> bool:
        """An earlier outcome that stands, or a job that cannot run: recorded as this run's result."""
        previous = self.journal.last(job.key)
        files = self.journal.earlier_files(job.key, self.out_dir)
        if files:
            self.finish(Result(job, "done", files, note="earlier run", server=previous.get("server", "")))
        elif previous and previous["event"] == "failed" and not self.retry_failed:
            self.finish(Result(job, "skipped", error=previous.get("error", ""), note="failed earlier"))
        elif job.error:
            self.failed(job, job.error, server=None)
        else:
            return False
        return True

    # -- an item on a server ---------------------------------------------------------------------

    def home(self, job: Job) -> str | None:
        """Where an earlier run sent the item (see ``Journal.home``)."""
        return self.journal.home(job.key)

    def claim(self, job: Job, server: str) -> None:
        """Before the item goes to ``server``: journaled, so a resumed run looks for it there first."""
        self._started.setdefault(job.key, time.monotonic())
        if self.journal.home(job.key) != server:
            self.record("claimed", item=job.key, prompt_id=job.prompt_id, server=server)

    def record(self, event: str, **data: Any) -> None:
        self.journal.write(event, **data)

    def done(self, job: Job, files: list[Path], server: str, found: bool) -> None:
        self.record(
            "done",
            item=job.key,
            prompt_id=job.prompt_id,
            row=job.item.row,
            image=str(job.item.image),
            files=[f.name for f in files],
            server=server,
        )
        self.finish(Result(job, "done", files, note="found on the server" if found else "", server=server))

    def failed(self, job: Job, error: str, server: str | None) -> None:
        where = {} if server is None else {"server": server}
        self.record("failed", item=job.key, row=job.item.row, image=str(job.item.image), error=error, **where)
        self.finish(Result(job, "failed", error=error, server=server or ""))

    def finish(self, result: Result) -> None:
        key = result.job.key
        if key in self._started:
            result.seconds = time.monotonic() - self._started[key]
        self.results[key] = result
        self.progress.finished(result.status == "done")
        label = f"{result.job.item.row}: {result.job.item.label}"
        if result.status == "done":
            files = ", ".join(str(f) for f in result.files)
            self.progress.message(f"done    {label} -> {files}" + (f" ({result.note})" if result.note else ""))
        else:
            self.progress.message(f"{result.status:7} {label}: {result.error}")

    # -- the end ---------------------------------------------------------------------------------

    def close(self, jobs: list[Job], stop_reason: str) -> list[Result]:
        """One result per job given to :meth:`open` (in its order); an unfinished one is "not run". Tells each
        server's (or worker's) throughput."""
        self.journal.close()
        if self.progress.servers:
            self.progress.message(self.progress.server_summary(time.monotonic() - self._opened))
        for job in jobs:
            if job.key not in self.results:
                self.results[job.key] = Result(job, "not run", error=stop_reason)
        return [self.results[job.key] for job in jobs]
