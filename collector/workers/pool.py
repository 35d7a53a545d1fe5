"""The ingest workers as one component of the main process: it binds the OTLP ports, starts ``ingest.workers``
processes that receive on them, queues what they submit in the one ``Pipeline`` and answers each submission
once committed; it restarts a worker that dies and, on ``stop``, lets every worker drain before the writer stops.

The OTLP/HTTP listening socket is bound here and inherited by every worker (connections waiting in the backlog
survive a worker's death; the workers share them evenly, ``balance``, by their counts in the ``Door``). For
OTLP/gRPC, whose server binds its own socket, this process reserves the port with a bound, non-listening
``SO_REUSEPORT`` socket (port 0 gets its number here) and each worker binds it again with ``SO_REUSEPORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field

from collector.auth.failures import FailureTable
from collector.component import Deadline, StartupError
from collector.config import ServerSettings, Settings
from collector.model import Records
from collector.pipeline import Backpressure, Pipeline
from collector.server import bind, cannot_listen
from collector.workers.link import NOT_SERVING, Door, Link, submitted
from collector.workers.metrics import Shipment, WorkerCounters

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds a worker has to import, bind and say it is ready
RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)  # between restarts of a worker that keeps dying, then the last one
STEADY = 10.0  # seconds a restarted worker must live for its next death to restart it at once again
PUBLISH_EVERY = 0.05  # seconds between two publications of the queue's fill, besides those on each change
FLUSH_TIMEOUT = 1.0  # seconds a scrape waits for the workers' counters


def reserve_port(server: ServerSettings) -> socket.socket:
    """A bound, non-listening ``SO_REUSEPORT`` socket holding the gRPC port for the workers."""
    endpoint = server.endpoint
    if endpoint.port:  # the readable reason when the port is taken by someone else
        bind(server).close()
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's own: a restart beside TIME_WAITs
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((endpoint.host, endpoint.port))
    except OSError as error:
        sock.close()
        raise cannot_listen(server, error) from None
    return sock


def worker_settings(settings: Settings) -> Settings:
    """A worker's settings: the bounds configured for the collector shared among its workers, so that all of them
    together hold as many requests in progress (and bytes of bodies being received) as one process would. Wrong
    keys need no share: every worker counts them in the main process's table (``auth.failures``)."""
    share = math.ceil(settings.max_concurrent_requests / settings.ingest.processes)
    return settings.model_copy(update={"max_concurrent_requests": share})


@dataclass(eq=False)
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    link: Link | None = None
    task: asyncio.Task[None] | None = None
    flushes: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # set when its link closes
    restarts: int = 0


class IngestWorkers:
    """``settings.ingest.processes`` worker processes receiving OTLP for the one ``Pipeline`` of this process."""

    name = "ingest_workers"

    def __init__(
        self, settings: Settings, pipeline: Pipeline, counters: WorkerCounters, failures: FailureTable
    ) -> None:
        """``failures``: the main process's table of wrong keys by address, which every worker counts into."""
        self._settings = settings
        self._pipeline = pipeline
        self._counters = counters
        self._failures = failures
        self.ports: dict[str, int] = {}
        self._workers = [_Worker(index) for index in range(settings.ingest.processes)]
        self._http: socket.socket | None = None
        self._grpc: socket.socket | None = None
        self._door: Door | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._tokens = itertools.count(1)
        self._restarting: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def running(self) -> int:
        """Workers connected and serving."""
        return sum(1 for worker in self._workers if worker.link is not None)

    async def start(self) -> None:
        servers = self._settings.servers
        self._http = bind(servers["otlp_http"])
        self._grpc = reserve_port(servers["otlp_grpc"])
        self.ports = {"otlp_grpc": self._grpc.getsockname()[1], "otlp_http": self._http.getsockname()[1]}
        self._door = Door.create(len(self._workers))
        self._publishing = asyncio.create_task(self._publish_every(), name="publish-queue-fill")
        outcomes = await asyncio.gather(*(self._spawn(worker) for worker in self._workers), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _spawn(self, worker: _Worker) -> None:
        """Start ``worker``'s process and wait until it serves; on this thread, which it dies with."""
        assert self._http is not None and self._grpc is not None and self._door is not None
        ours, theirs = socket.socketpair()
        inherited = (theirs.fileno(), self._http.fileno(), self._door.fd, self._failures.fd)
        with theirs:
            # Started on the event loop's own thread, not a thread pool's: PR_SET_PDEATHSIG fires when the thread
            # that forked the worker ends, and this one lives as long as the collector.
            process = subprocess.Popen(  # noqa: ASYNC220
                [
                    sys.executable,
                    "-m",
                    "collector.workers.worker",
                    *("--parent", str(os.getpid()), "--link", str(inherited[0]), "--http", str(inherited[1])),
                    *("--door", str(inherited[2]), "--failures", str(inherited[3])),
                    *("--grpc-port", str(self.ports["otlp_grpc"])),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=inherited,
            )
        worker.process = process
        worker.drained = asyncio.Event()
        link = await Link.open(ours)
        link.send(("start", worker_settings(self._settings), worker.index))
        try:
            ready = await asyncio.wait_for(link.receive(), START_TIMEOUT)
        except TimeoutError:
            ready = None
        if ready != ("ready",):
            self._door.set_connections(worker.index, NOT_SERVING)
            link.close()
            process.kill()
            code = await asyncio.to_thread(process.wait)
            raise StartupError(f"ingest worker {worker.index} did not start (exit code {code}); see the lines above")
        worker.link = link
        worker.task = asyncio.create_task(self._serve(worker, link, process), name=f"ingest-worker-{worker.index}")

    async def _serve(self, worker: _Worker, link: Link, process: subprocess.Popen[bytes]) -> None:
        """Answer the worker until it goes away; then restart it unless the collector is stopping."""
        started = asyncio.get_running_loop().time()
        while (message := await link.receive()) is not None:
            kind = message[0]
            if kind == "submit":
                self._submit(link, message[1], submitted(message))
            elif kind == "metrics":
                self._shipped(worker, message[1], message[2])
        worker.link = None
        worker.drained.set()
        link.close()
        if self._door is not None:  # its connections closed with it (the door is gone once stopped)
            self._door.set_connections(worker.index, NOT_SERVING)
        for flush in worker.flushes.values():
            if not flush.done():
                flush.set_result(None)
        code = await asyncio.to_thread(process.wait)
        if self._stopping:
            return
        log.warning(
            "ingest worker %d (pid %d) exited with code %d; restarting it (its clients retry what was not "
            "acknowledged)",
            worker.index,
            process.pid,
            code,
        )
        worker.restarts = 0 if asyncio.get_running_loop().time() - started > STEADY else worker.restarts + 1
        restart = asyncio.create_task(self._restart(worker), name=f"restart-ingest-worker-{worker.index}")
        self._restarting.add(restart)
        restart.add_done_callback(self._restarting.discard)

    async def _restart(self, worker: _Worker) -> None:
        while True:
            await asyncio.sleep(RESTART_DELAYS[min(worker.restarts, len(RESTART_DELAYS) - 1)])
            if self._stopping:
                return
            try:
                await self._spawn(worker)
                return
            except StartupError as error:
                log.error("%s; trying again", error)
                worker.restarts += 1

    def _submit(self, link: Link, request_id: int, records: Records) -> None:
        try:
            committed = self._pipeline.submit(records)
        except Backpressure as refusal:
            link.send(("done", request_id, refusal))
            return
        self._publish()

        def answer(future: asyncio.Future[None]) -> None:
            self._publish()
            error = None if future.cancelled() else future.exception()
            link.send(("done", request_id, error))

        committed.add_done_callback(answer)

    def _shipped(self, worker: _Worker, token: int, shipment: Shipment) -> None:
        self._counters.add(shipment)
        flush = worker.flushes.pop(token, None)
        if flush is not None and not flush.done():
            flush.set_result(None)

    async def flush_counters(self) -> None:
        """Have every worker ship its counters now (before a scrape), waiting ``FLUSH_TIMEOUT`` at most."""
        token = next(self._tokens)
        loop = asyncio.get_running_loop()
        waiting = []
        for worker in self._workers:
            if worker.link is not None:
                flush = worker.flushes[token] = loop.create_future()
                waiting.append(flush)
                worker.link.send(("flush", token))
        if waiting:
            await asyncio.wait(waiting, timeout=FLUSH_TIMEOUT)
        for worker in self._workers:
            worker.flushes.pop(token, None)

    def _publish(self) -> None:
        if self._door is not None:
            self._door.publish(self._pipeline.held_spans)

    async def _publish_every(self) -> None:
        while True:
            self._publish()
            await asyncio.sleep(PUBLISH_EVERY)

    async def stop(self, deadline: Deadline) -> None:
        """Every worker stops accepting and drains its requests in flight (their records still go to the
        pipeline, open until this returns) within the deadline; those still running past it are killed."""
        self._stopping = True
        for restart in self._restarting:
            restart.cancel()
        if self._http is not None:
            self._http.close()  # the workers keep their copies until their own listeners stop
        serving = [worker for worker in self._workers if worker.link is not None]
        for worker in self._workers:
            if worker.link is None and worker.process is not None and worker.process.poll() is None:
                worker.process.kill()  # still starting (a restart): it has acknowledged nothing
        drained = [asyncio.ensure_future(worker.drained.wait()) for worker in serving]
        for worker in serving:
            assert worker.link is not None
            worker.link.send(("stop", deadline.remaining()))
        if drained:
            await asyncio.wait(drained, timeout=deadline.remaining() + 1.0)
        for waiting in drained:
            waiting.cancel()
        for worker in serving:
            if not worker.drained.is_set():
                log.error("ingest worker %d did not stop in time; killing it", worker.index)
        # A worker that closed its link has answered every request it took; what is left of it is the
        # interpreter's teardown, which the writer need not wait for.
        tasks = [worker.task for worker in serving if worker.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=deadline.remaining())
        for worker in serving:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._publishing is not None:
            self._publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publishing
        for resource in (self._grpc, self._door):
            if resource is not None:
                resource.close()
        self._grpc = self._door = self._http = self._publishing = None
