"""One item on one server, made exactly once: looked for before anything is sent, sent only when absent.

The item's prompt id is derived from its content and the batch's secret, so whoever renders it (a resumed
client, a restarted cluster worker) finds it where it went: in the server's queue (wait for it), its history
(take the outputs) or, after a server restart, as a complete output file under the item's prefix. Only when
it is nowhere is it sent (again). What happens on the way is told to ``record`` (the journal's events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .graph import set_image
from .http_client import ItemError, ServerDown
from .items import Job
from .link import ServerLink
from .outputs import locate

log = logging.getLogger("dynamicrafter.batch")

Record = Callable[..., None]
"""``record(event, **data)``: a journal event of the item (``submitted``, ``requeued``, ``reissued``)."""


@dataclass
class Rendered:
    """The outputs of an item on its server: ``(name, subfolder)`` each."""

    files: list[tuple[str, str]]
    found: bool
    """True when the server already had it (an earlier run sent it), False when this call sent it."""


async def render(job: Job, link: ServerLink, poll: float, record: Record, sent_before: bool = False) -> Rendered:
    """Locate ``job`` on the server behind ``link``; send it only when it is nowhere; wait; return its outputs.

    Raises :class:`ItemError` when the item fails there, ``ServerGone`` when the server stays away."""
    submitted = False
    try:
        while True:
            try:
                where, detail = await locate(job, link)
                if where == "done":
                    return Rendered(detail, found=not submitted)
                if where == "error":
                    raise ItemError(detail)
                if where == "foreign":
                    _reissue(job, link, record)
                    submitted = sent_before = False
                    continue
                if where == "absent":
                    if submitted or sent_before:
                        log.info("row %s: not on %s; sending it again", job.item.row, link.name)
                        record("requeued", item=job.key, prompt_id=job.prompt_id, server=link.name)
                    submitted = True  # from here the server may hold it, even if the answer is lost
                    await _submit(job, link, record)
                await link.wait(job.prompt_id, poll)
            except ServerDown as e:
                await link.recover(e)
    finally:
        link.forget(job.prompt_id)


def _reissue(job: Job, link: ServerLink, record: Record) -> None:
    """The server holds someone else's result under the item's id: never taken. The item gets the next id of
    its secret chain, so a run that dies before journaling this finds the same new id again."""
    old = job.prompt_id
    job.reissue()
    record("reissued", item=job.key, prompt_id=job.prompt_id, server=link.name, was=old)
    log.warning(
        "row %s: someone else's result under this id on %s (a different graph): not taken; rendered again "
        "under a fresh id",
        job.item.row,
        link.name,
    )
    link.forget(old)


async def _submit(job: Job, link: ServerLink, record: Record) -> None:
    name = await link.client.upload(job.upload, job.upload_name)
    if name != job.upload_name:
        set_image(job.graph, name)
    await link.client.submit(job.graph, job.prompt_id)
    link.forget_queue()
    record(
        "submitted",
        item=job.key,
        prompt_id=job.prompt_id,
        row=job.item.row,
        image=str(job.item.image),
        workflow=job.workflow,
        server=link.name,
    )
