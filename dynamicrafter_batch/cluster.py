"""Runs a batch on a Ray cluster: one worker actor per ComfyUI, Ray placing, restarting and retrying them.

Each worker (``cluster_worker.ComfyWorker``) owns a ComfyUI it starts on its machine (one GPU each by default)
or talks to one existing server. The driver, this process, is the journal's only writer: it claims an item for
a worker (journaled), hands it over as an actor call, and records what comes back; the outputs travel back
through Ray, so ``--out`` is a folder of the driver's machine. When a worker's process dies, Ray restarts the
actor and retries its calls on it; the restarted worker looks for each item before sending it again, so
nothing is made twice. A worker that cannot go on (its server stays away, its restarts are spent) hands its
items back to the others. A new driver after a dead one resumes from the journal: items go to the worker
they were claimed for, which finds them finished or renders them.

Ray is optional (``pip install "comfyui-dynamicrafter-native[cluster]"``); nothing here imports it before a
cluster run starts. The dashboard lists each item as a task named after its row (running, finished, failed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dynamicrafter_batch

from .cluster_worker import ComfyWorker, WorkerSpec
from .files import LocalFileError
from .items import Job, Result
from .ledger import Ledger
from .outputs import write_outputs
from .progress import Progress
from .runner import Options
from .servers import ServerSpec

log = logging.getLogger("dynamicrafter.batch")

INSTALL_HINT = (
    'runs on a Ray cluster: install Ray where the client runs and on every machine of the cluster: pip install "ray[default]>=2.9" '
    '(or pip install "comfyui-dynamicrafter-native[cluster]"); with one server, give one --server and no --cluster'
)
NAMESPACE = "dynamicrafter-batch"


class ClusterError(RuntimeError):
    """The cluster cannot run the batch (Ray missing, no address, no GPU for the workers...)."""


@dataclass
class ClusterOptions:
    address: str | None = None
    """A running cluster (``ray start --head`` prints it; ``auto`` finds the local one); None starts Ray here."""
    workers: int | None = None
    """Workers with their own ComfyUI; None: one per GPU of the cluster."""
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    comfyui: str | None = None
    comfyui_args: list[str] = field(default_factory=list)
    worker_dir: str | None = None
    """Where each own server keeps its folders, on its machine (default: the system's temporary folder)."""
    max_restarts: int = 3
    """How often Ray restarts a worker whose process died (and retries what it held) before it is given up."""
    servers: list[ServerSpec] = field(default_factory=list)
    """Existing servers instead of own ones: each becomes a worker that talks to it."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"Ray is not installed: a batch on several servers {INSTALL_HINT}") from None
    return ray


@dataclass
class Worker:
    """The driver's view of one worker actor."""

    name: str
    actor: Any
    concurrency: int
    resources: str = ""
    resume: deque[Job] = field(default_factory=deque)
    """Items an earlier run claimed for this worker: looked for here before anything else is sent."""
    gone: str | None = None
    ready: bool = False
    """Ray placed it and it answered (it then has a server to stop at the end)."""


def worker_specs(cluster: ClusterOptions, options: Options, client_id: str, count: int) -> list[WorkerSpec]:
    shared = {"poll": options.poll, "server_wait": options.server_wait}
    if cluster.servers:
        return [WorkerSpec(s.name, url=s.url, headers=dict(s.headers), **shared) for s in cluster.servers]
    root = Path(cluster.worker_dir or Path(tempfile.gettempdir()) / NAMESPACE) / client_id[:12]
    return [
        WorkerSpec(
            f"worker-{n}",
            comfyui=cluster.comfyui,
            comfyui_args=list(cluster.comfyui_args),
            work_dir=str(root / f"worker-{n}"),
            **shared,
        )
        for n in range(count)
    ]


def start_workers(ray: Any, cluster: ClusterOptions, options: Options, client_id: str) -> list[Worker]:
    """The actors: one per existing server, or ``workers`` (default: one per GPU) with their own ComfyUI."""
    if cluster.servers:
        count, gpus, cpus = len(cluster.servers), 0.0, 0.0
    else:
        if not cluster.comfyui:
            raise ClusterError("--comfyui DIR: the ComfyUI folder on the cluster's machines (with the pack installed)")
        available = ray.cluster_resources().get("GPU", 0.0)
        count = cluster.workers or (int(available // cluster.gpus_per_worker) if cluster.gpus_per_worker else 0)
        if count < 1:
            raise ClusterError(
                f"the cluster has {available:g} GPUs: give --workers N (with --gpus-per-worker 0 to render on CPUs)"
            )
        gpus, cpus = cluster.gpus_per_worker, cluster.cpus_per_worker
    remote = ray.remote(ComfyWorker)
    workers = []
    for spec in worker_specs(cluster, options, client_id, count):
        concurrency = next((s.concurrency for s in cluster.servers if s.name == spec.name), options.concurrency)
        actor = remote.options(
            name=f"{client_id[:12]}-{spec.name}",
            namespace=NAMESPACE,
            num_gpus=gpus,
            num_cpus=cpus,
            max_restarts=cluster.max_restarts,
            max_task_retries=cluster.max_restarts,
            max_concurrency=concurrency + 2,
        ).remote(spec, client_id, gpus > 0)
        workers.append(Worker(spec.name, actor, concurrency, resources=f"{gpus:g} GPU, {cpus:g} CPU"))
    return workers


def connect(ray: Any, address: str | None) -> None:
    """Join the cluster at ``address`` (None: ``$RAY_ADDRESS``, else a Ray started here for this run); the
    worker code travels with the job, so the cluster's machines need Ray, ComfyUI and the pack, not this client."""
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            runtime_env={"py_modules": [dynamicrafter_batch]},
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"at {address}" if address else "here"
        raise ClusterError(
            f"no Ray cluster {where} ({str(e).splitlines()[0] if str(e) else type(e).__name__}): start one with "
            "'ray start --head' (and 'ray start --address HEAD:6379' on the other machines), or give --cluster local"
        ) from None


class Dispatcher:
    """Hands the items to the workers' free slots and records what comes back."""

    def __init__(self, ledger: Ledger, workers: list[Worker], progress: Progress, ray: Any, place_wait: float) -> None:
        self.ledger = ledger
        self.place_wait = place_wait
        self.workers = workers
        self.progress = progress
        self.ray = ray
        self.pool: deque[Job] = deque()
        self.in_flight = 0
        self.changed = asyncio.Event()

    async def run(self, pending: list[Job]) -> str:
        """Render ``pending``; returns why the batch stopped short ("" when it did not)."""
        by_name = {w.name: w for w in self.workers}
        for job in pending:
            home = self.ledger.home(job)
            if home in by_name:
                by_name[home].resume.append(job)
            else:
                if home:
                    log.warning("row %s was sent to %s, not a worker of this run: it is sent again", job.item.row, home)
                self.pool.append(job)
        for worker in self.workers:
            self.progress.server(worker.name)
        await asyncio.gather(*(self._worker(w) for w in self.workers))
        if not self.pool and not any(w.resume for w in self.workers):
            return ""
        gone = "; ".join(f"{w.name}: {w.gone}" for w in self.workers if w.gone)
        return f"no worker left ({gone}); run the same command again to resume"

    def _next(self, worker: Worker) -> Job | None:
        if worker.resume:
            return worker.resume.popleft()
        return self.pool.popleft() if self.pool else None

    async def _placed(self, worker: Worker) -> None:
        """Until Ray has placed the worker (a cluster without the resources it asks for never does: the worker
        is then given up after ``server_wait`` seconds instead of holding the batch)."""
        answer = asyncio.ensure_future(worker.actor.describe.remote())
        deadline = time.monotonic() + self.place_wait
        while not answer.done() and time.monotonic() < deadline:
            await asyncio.wait({answer}, timeout=1.0)
            if not (answer.done() or self.pool or worker.resume or self.in_flight):
                answer.cancel()
                return  # the others finished the batch meanwhile
        try:
            if not answer.done():
                answer.cancel()
                worker.gone = (
                    f"Ray found no place for it in {self.place_wait:.0f} s (it asks for {worker.resources}): "
                    "add machines, or lower --workers / --gpus-per-worker"
                )
            else:
                answer.result()
        except self.ray.exceptions.RayError as e:
            worker.gone = f"it could not start ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        if worker.gone:
            self.progress.server(worker.name).state = "gone"
            self.progress.message(f"{worker.name} is given up: {worker.gone}")
            self.pool.extend(worker.resume)
            worker.resume.clear()
        else:
            worker.ready = True

    async def _worker(self, worker: Worker) -> None:
        """Once Ray has placed the worker, its ``concurrency`` slots."""
        await self._placed(worker)
        await asyncio.gather(*(self._slot(worker) for _ in range(worker.concurrency)))

    async def _slot(self, worker: Worker) -> None:
        while not worker.gone:
            job = self._next(worker)
            if job is None:
                if not self.in_flight:
                    return
                await self.changed.wait()  # an item in flight may come back to the pool
                self.changed.clear()
                continue
            self.in_flight += 1
            try:
                await self._serve(job, worker)
            finally:
                self.in_flight -= 1
                self.changed.set()

    async def _serve(self, job: Job, worker: Worker) -> None:
        try:
            payload = dataclasses.replace(job, upload=job.upload.load())
        except LocalFileError as e:
            return self.ledger.failed(job, str(e), server=None)
        self.ledger.claim(job, worker.name)
        self.progress.started(worker.name)
        self.progress.show(f"row {job.item.row} on {worker.name}")
        outcome = None
        try:
            call = worker.actor.render.options(name=f"row {job.item.row}: {job.item.label}")
            reply = await call.remote(payload, self.ledger.journal.submitted(job.key))
        except self.ray.exceptions.RayError as e:
            reply = {"status": "gone", "error": f"its actor died ({type(e).__name__}) past its restarts", "events": []}
        for event in reply["events"]:  # the worker names its server's address; the journal names the worker
            self.ledger.record(**(event | {"server": worker.name, "address": event.get("server", "")}))
            if event["event"] == "requeued":
                self.progress.message(f"row {job.item.row}: not on {worker.name}'s server any more; sent again")
        if reply.get("prompt_id") and reply["prompt_id"] != job.prompt_id:
            job.bind(job.secret, reply["prompt_id"])
        if reply["status"] == "done":
            files = write_outputs(reply["outputs"], self.ledger.out_dir, job.local_stem())
            self.ledger.done(job, files, worker.name, reply["found"])
            outcome = "done"
        elif reply["status"] == "failed":
            self.ledger.failed(job, reply["error"], worker.name)
            outcome = "failed"
        else:
            self._give_up(worker, job, reply["error"])
        self.progress.stopped(worker.name, outcome)
        return None

    def _give_up(self, worker: Worker, job: Job, reason: str) -> None:
        """The worker cannot go on: its items go to the others."""
        self.ledger.record("released", item=job.key, server=worker.name, reason=reason)
        if not worker.gone:
            worker.gone = reason
            self.progress.server(worker.name).state = "gone"
            self.progress.message(f"{worker.name} is given up: {reason}; the batch goes on without it")
        self.pool.appendleft(job)
        while worker.resume:
            self.pool.append(worker.resume.popleft())


def run_on_cluster(
    jobs: list[Job],
    out_dir: Path,
    options: Options,
    cluster: ClusterOptions,
    progress: Progress | None = None,
) -> list[Result]:
    """Run ``jobs`` on a Ray cluster (see the module docstring); one result per job."""
    ray = import_ray()
    progress = progress or Progress(0)
    ledger = Ledger(out_dir, progress, options.retry_failed)
    stop_reason = "the batch stopped; run the same command again to resume"
    workers: list[Worker] = []
    try:
        pending = ledger.open(jobs)
        if pending:
            connect(ray, cluster.address)
            workers = start_workers(ray, cluster, options, ledger.client_id)
            stopped = asyncio.run(Dispatcher(ledger, workers, progress, ray, options.server_wait).run(pending))
            if stopped:
                stop_reason = stopped
                progress.message(f"the batch stops: {stopped}")
    finally:
        for worker in workers:
            if worker.ready:
                try:
                    ray.get(worker.actor.stop.remote(), timeout=60)
                except ray.exceptions.RayError:
                    pass  # gone already: Ray took its server down with it
            ray.kill(worker.actor)
        results = ledger.close(jobs, stop_reason)
    return results
