#!/usr/bin/env python3
"""Batch image-to-video through the HTTP API of a ComfyUI server, or on a Ray cluster; resumable after any crash.

    dynamicrafter-batch --images photos/ --prompt "waves crashing" --out videos/
    dynamicrafter-batch --csv batch.csv --out videos/ --cluster auto --comfyui /opt/ComfyUI
    dynamicrafter-batch --csv batch.csv --out videos/ --server http://gpu1:8188 --server http://gpu2:8188
    dynamicrafter-batch --csv batch.csv --out videos/ --servers-file servers.txt --dry-run
    python -m dynamicrafter_batch.client ...  (the same, from a checkout)

Each item (an image of the folder, or a CSV row with the columns ``image, prompt`` and any of the
workflow's inputs, e.g. ``seed, fs, variant, steps``) becomes one API-format prompt: the shipped workflow
(``workflows/api/<name>_<variant>.json``, else the same file from the server's pack) with the item's
picture, prompt and values set on the nodes that have those inputs. The options under "workflow inputs"
are read from the chosen workflow itself. The server takes up to its concurrency of items; progress is
one line on stderr, outputs come over ``GET /view`` into the output folder, a summary table ends the run.

More than one server is a cluster's job: ``--cluster`` runs the batch on Ray, each worker with a ComfyUI of
its own (``--comfyui``) or one of the ``--server`` ones (``cluster``). Ray is optional: one server needs none.

``journal.jsonl`` in the output folder records (fsync'd) which server or worker each item was claimed for
before it is sent, each submission, output and error: kill the client, a server or a worker, start again,
and every item is still made exactly once (``render``). Items that failed (bad image, validation error) are
skipped by later runs unless ``--retry-failed``.

Only pictures are uploaded, and only from the folder (or the CSV's folder tree) unless
``--allow-files-outside``: a CSV naming ``/etc/passwd`` or a link out of its folder uploads nothing
(``batch_files``). Prompt ids are derived with a secret kept in the journal, and a result is taken only
when the server's stored graph is the item's own.

Needs only the standard library, aiohttp and Pillow (which ComfyUI itself requires), and Ray for a cluster: it
imports nothing from the pack, so it runs from a checkout, as the ``dynamicrafter-batch`` console script, or on
another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .cluster import ClusterError, ClusterOptions, run_on_cluster
from .files import ALLOW_OUTSIDE_OPTION
from .graph import DEFAULT_WORKFLOW, WorkflowError, add_set_option, fields
from .http_client import ComfyClient, ServerDown, fetch_shipped_workflow, history_outcome, run_prompt_once
from .items import (
    DEFAULT_PREFIX,
    Item,
    Job,
    Result,
    Settings,
    WorkflowSource,
    build_jobs,
    items_from_csv,
    items_from_folder,
)
from .journal import JOURNAL_NAME, Journal, JournalBusy
from .progress import Progress, summary_table
from .runner import BatchRunner, Options
from .servers import ServerListError, ServerSpec, server_specs

__all__ = [
    "ComfyClient",
    "DEFAULT_WORKFLOW",
    "Item",
    "Options",
    "Progress",
    "ServerDown",
    "Settings",
    "build_jobs",
    "earlier_files",
    "history_outcome",
    "main",
    "run_batch",
    "run_prompt_once",
]
"""What other programs (``dynamicrafter_batch.run``) use."""

log = logging.getLogger("dynamicrafter.batch")
DEFAULT_SERVER = "http://127.0.0.1:8188"


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("expected NAME=VALUE, e.g. Authorization='Bearer ${TOKEN}'")
    return name.strip(), value


def base_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamicrafter-batch",
        description=__doc__,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", type=Path, help="a folder of pictures (a <name>.txt beside one is its prompt)")
    source.add_argument("--csv", type=Path, help="a CSV with columns image, prompt and any workflow input below")
    parser.add_argument("--out", type=Path, help="output folder (holds journal.jsonl)")
    parser.add_argument(
        ALLOW_OUTSIDE_OPTION,
        action="store_true",
        help="upload pictures a CSV names outside its own folder tree (or links in --images leading out of it); "
        "without it such rows fail and nothing of them is uploaded",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help=f"a ComfyUI server (repeatable; default $COMFYUI_URL or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--servers-file",
        type=Path,
        metavar="FILE",
        help="servers, one a line: URL [concurrency=N] [header.NAME=VALUE ...] (${VAR} from the environment)",
    )
    parser.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an HTTP header for the --server servers (e.g. a proxy's Authorization); never printed",
    )
    parser.add_argument(
        "--workflow",
        default=DEFAULT_WORKFLOW,
        help="a shipped workflow name (image_to_video -> workflows/api/image_to_video_<variant>.json) "
        "or an API-format JSON file",
    )
    parser.add_argument("--variant", help="picks the workflow file (image_to_video_<variant>) and sets its variant")
    parser.add_argument("--prompt", default="", help="the prompt for items without one")
    add_set_option(parser, "set any input by node class, e.g. --set DynamiCrafterSampler.cfg=5 (repeatable)")
    parser.add_argument("--concurrency", type=int, default=2, help="items queued on each server at once (default 2)")
    parser.add_argument("--retry-failed", action="store_true", help="run items that failed in an earlier run again")
    parser.add_argument(
        "--server-wait",
        type=float,
        default=600.0,
        help="seconds a server may stay away before its items give up on it (default 600)",
    )
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status checks (default 2)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="server-side output subfolder")
    parser.add_argument("--dry-run", action="store_true", help="list what would be sent where, send nothing")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_cluster_options(parser)
    return parser


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cluster (Ray)", "more than one server, or --cluster: the batch runs on Ray (pip install 'ray[default]')"
    )
    group.add_argument(
        "--cluster",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run on Ray: the address 'ray start --head' printed, 'auto' (the cluster this machine is part of; "
        "the default when the option is bare) or 'local' (Ray started here for this run). Without --server, "
        "each worker starts its own ComfyUI (--comfyui)",
    )
    group.add_argument("--comfyui", metavar="DIR", help="the ComfyUI folder on every machine (the pack installed)")
    group.add_argument(
        "--comfyui-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an option for each worker's ComfyUI main.py, e.g. --comfyui-arg=--highvram (repeatable)",
    )
    group.add_argument("--workers", type=int, help="workers with their own ComfyUI (default: one per GPU)")
    group.add_argument("--gpus-per-worker", type=float, default=1.0, help="GPUs each worker takes (default 1; 0: CPU)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each worker takes (default 1)")
    group.add_argument(
        "--worker-dir",
        metavar="DIR",
        help="where each worker's ComfyUI keeps its files (default: the temporary folder)",
    )
    group.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="times Ray restarts a worker whose process died, retrying what it held (default 3)",
    )


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The options, and the workflow inputs given on the command line (their options come from the workflow)."""
    base = base_parser()
    known, _ = base.parse_known_args(argv)
    parser = argparse.ArgumentParser(
        parents=[base], prog=base.prog, description=base.description, formatter_class=base.formatter_class
    )
    offered = workflow_fields(known)
    taken = {s for action in parser._actions for s in action.option_strings}
    group = parser.add_argument_group(
        "workflow inputs",
        "read from the chosen workflow's nodes; an item's CSV column of the same name wins"
        if offered
        else "(the workflow could not be read: use --set or CSV columns)",
    )
    dests = {}
    for name, example in offered.items():
        if option_name(name) not in taken:
            dests[name] = f"field__{name}"
            group.add_argument(
                option_name(name), dest=dests[name], metavar=type(example).__name__.upper(), help=f"default {example!r}"
            )
    args = parser.parse_args(argv)
    if (args.images is None) == (args.csv is None) or args.out is None:
        parser.error("give --images FOLDER or --csv FILE, and --out FOLDER")
    values = {name: getattr(args, dest) for name, dest in dests.items() if getattr(args, dest) is not None}
    if args.variant is not None:
        values["variant"] = args.variant
    return args, values


def servers_of(args: argparse.Namespace) -> list[ServerSpec]:
    """The servers named; none for a cluster whose workers start their own."""
    if args.cluster is not None and not args.server and not args.servers_file:
        return []
    urls = args.server or ([] if args.servers_file else [os.environ.get("COMFYUI_URL", DEFAULT_SERVER)])
    return server_specs(urls, args.servers_file, max(1, args.concurrency), dict(args.header))


def cluster_of(args: argparse.Namespace, specs: list[ServerSpec]) -> ClusterOptions | None:
    """The cluster to run on, or None for the single-server path (no engine)."""
    if args.cluster is None and len(specs) < 2:
        return None
    return ClusterOptions(
        address=None if args.cluster in (None, "local") else args.cluster,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        comfyui=args.comfyui,
        comfyui_args=args.comfyui_arg,
        worker_dir=args.worker_dir,
        max_restarts=args.max_restarts,
        servers=specs,
    )


def remote_workflows(specs: list[ServerSpec]):
    """Asks the first server for the pack's shipped workflow (a client with no checkout beside it)."""
    return lambda stems: fetch_shipped_workflow(specs[0].url, stems, specs[0].headers) if specs else None


def workflow_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The inputs the chosen workflow offers (empty when it cannot be read yet)."""
    try:
        source = WorkflowSource(args.workflow, remote_workflows(servers_of(args)))
        return fields(source.get(args.variant)[1])
    except (WorkflowError, ServerListError, OSError):
        return {}


def dry_run(jobs: list[Job], out_dir: Path, specs: list[ServerSpec], retry_failed: bool) -> str:
    """What a run would do with each item, from the journal alone (no server is asked)."""
    journal = Journal(out_dir / JOURNAL_NAME, writable=False)
    turns = [spec.name for spec in specs for _ in range(spec.concurrency)] or ["a worker of the cluster"]
    lines, turn = [], 0
    for job in jobs:
        previous = journal.last(job.key)
        home = journal.home(job.key)
        if previous and previous["event"] == "done":
            plan = "done in an earlier run"
        elif job.error or (previous and previous["event"] == "failed" and not retry_failed):
            plan = f"skipped: {job.error or previous.get('error', 'failed earlier')}"
        elif home:
            plan = f"looked for on {home} (sent there before)"
        elif home == "":
            plan = "looked for where it goes (an earlier run sent it), else sent"
        else:
            plan = f"sent to {turns[turn % len(turns)]} (or whichever is free first)"
            turn += 1
        lines.append(f"{job.item.row:>5}  {job.item.label}  {job.workflow or '-'}  {plan}")
    return "\n".join(lines)


def earlier_files(job: Job, out_dir: Path) -> list[Path] | None:
    """The files an earlier run made for ``job`` in ``out_dir``, still all there (the journal alone: no server)."""
    return Journal(out_dir / JOURNAL_NAME, writable=False).earlier_files(job.key, out_dir)


def run_batch(
    server: str | ServerSpec,
    jobs: list[Job],
    out_dir: Path,
    options: Options | None = None,
    progress: Progress | None = None,
) -> list[Result]:
    """One server's batch, for other programs (the run command): run ``jobs``, return one result per job."""
    options = options or Options()
    spec = ServerSpec(server, options.concurrency) if isinstance(server, str) else server
    return asyncio.run(BatchRunner(spec, out_dir, options, progress).run(jobs))


def main(argv: list[str] | None = None) -> int:
    args, values = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        specs = servers_of(args)
        outside = args.allow_files_outside
        items = (
            items_from_csv(args.csv, args.prompt, outside)
            if args.csv
            else items_from_folder(args.images, args.prompt, outside)
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not items:
        print("error: no items (no pictures in the folder, or an empty CSV)", file=sys.stderr)
        return 2
    settings = Settings(
        workflow=args.workflow, values=values, overrides=args.overrides, prefix=args.prefix.strip("/") or DEFAULT_PREFIX
    )
    jobs = build_jobs(items, settings, remote_workflows(specs))
    if args.dry_run:
        print(dry_run(jobs, args.out, specs, args.retry_failed))
        return 0
    options = Options(
        concurrency=args.concurrency, poll=args.poll, server_wait=args.server_wait, retry_failed=args.retry_failed
    )
    progress = Progress(len(jobs), enabled=not args.quiet)
    cluster = cluster_of(args, specs)
    try:
        if cluster is None:
            results = run_batch(specs[0], jobs, args.out, options, progress)
        else:
            results = run_on_cluster(jobs, args.out, options, cluster, progress)
    except (JournalBusy, ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_table(results))
    return 0 if all(r.status == "done" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
