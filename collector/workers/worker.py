"""One ingest worker process: ``python -m collector.workers.worker``, started by ``collector.workers.pool``.

It serves OTLP over HTTP (on the listening socket its parent bound and handed down) and gRPC (on the port its
parent reserved, bound again with ``SO_REUSEPORT``) with the same ``Ingest`` as a single process, over a
``RemotePipeline``: each request is acknowledged once the parent has committed its records. It dies with its
parent (``PR_SET_PDEATHSIG``), drains and exits on ``("stop", seconds)``, SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from collector.auth.failures import FailureTable
from collector.auth.listeners import ListenerSecurity, SecurityError
from collector.component import Deadline, StartupError, Together
from collector.config import Settings
from collector.observability import logs
from collector.observability.metrics import CollectorMetrics
from collector.receivers.listeners import new_ingest, otlp_listeners
from collector.storage.engines import records_preparer
from collector.workers.balance import Balance, BalancedListener
from collector.workers.link import Door, Link
from collector.workers.metrics import CounterShipper
from collector.workers.remote import RemotePipeline

log = logging.getLogger(__name__)

SHIP_EVERY = 1.0  # seconds between two shipments of the counters
# Threads decoding and transforming in a worker. One process's threads take turns on its one GIL, and each hand-over
# costs switches and caches; a single process keeps two so that one hostile request does not hold up every other
# client, while here the sibling workers (and this worker's event loop, which only receives) stay free for them.
INGEST_THREADS = 1
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Be killed when the parent dies (kill -9 included): a worker alone would take requests nobody writes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


class Worker:
    def __init__(
        self,
        link: Link,
        settings: Settings,
        door: Door,
        index: int,
        failures: FailureTable,
        http: socket.socket,
        grpc_port: int,
    ) -> None:
        self._link = link
        self._settings = settings
        registry = CollectorRegistry()
        self._shipper = CounterShipper(registry)
        metrics = CollectorMetrics(registry, label_cap=settings.metrics.max_label_values)
        try:
            security = ListenerSecurity(settings, registry, failures)
        except SecurityError as error:  # checked by the parent already; a file changed in between
            raise StartupError(str(error)) from None
        prepare = records_preparer(settings.db)
        self.pipeline = RemotePipeline(link, door, settings.queue_capacity, prepare)
        self._ingest = new_ingest(settings, self.pipeline, metrics, threads=INGEST_THREADS)
        http = BalancedListener.of(http, Balance(door, index))
        listeners = otlp_listeners(settings, self._ingest, metrics, security, http_socket=http, grpc_port=grpc_port)
        self._listeners = Together("listeners", listeners)
        self._stop = asyncio.Event()
        self._drain_for = settings.shutdown_timeout

    def stop(self, seconds: float | None = None) -> None:
        if seconds is not None:
            self._drain_for = seconds
        self._stop.set()

    async def run(self) -> int:
        try:
            await self._listeners.start()
        except StartupError as error:
            log.error("ingest worker cannot start: %s", error)
            await self._listeners.stop(Deadline.after(0))
            return 1
        self._link.send(("ready",))
        # What start-up built (modules, settings, tables) lives as long as the worker: out of the collector's sight,
        # its full collections no longer walk it (a collection's cost grows with every object it must walk).
        gc.collect()
        gc.freeze()
        listening = asyncio.create_task(self._listen(), name="link")
        shipping = asyncio.create_task(self._ship_every_second(), name="ship-counters")
        await self._stop.wait()
        await self._listeners.stop(Deadline.after(self._drain_for))
        await self._ingest.stop(Deadline.after(0))
        shipping.cancel()
        self._link.send(("metrics", 0, self._shipper.shipment()))
        await self._link.flush()
        listening.cancel()
        self._link.close()
        return 0

    async def _listen(self) -> None:
        while (message := await self._link.receive()) is not None:
            kind = message[0]
            if kind == "done":
                self.pipeline.done(message[1], message[2])
            elif kind == "flush":
                self._link.send(("metrics", message[1], self._shipper.shipment()))
            elif kind == "stop":
                self.stop(message[1])
        self.pipeline.lost()  # the parent is gone (killed: PR_SET_PDEATHSIG ends us too)
        self.stop(0)

    async def _ship_every_second(self) -> None:
        while True:
            await asyncio.sleep(SHIP_EVERY)
            self._link.send(("metrics", 0, self._shipper.shipment()))


async def serve(link_fd: int, http_fd: int, door_fd: int, failures_fd: int, grpc_port: int) -> int:
    link = await Link.open(socket.socket(fileno=link_fd))
    start = await link.receive()
    if start is None:
        return 1
    _, settings, index = start
    logs.configure(settings.log_level, settings.log_format)
    try:
        worker = Worker(
            link,
            settings,
            Door(door_fd),
            index,
            FailureTable(failures_fd),
            socket.socket(fileno=http_fd),
            grpc_port,
        )
    except StartupError as error:
        log.error("ingest worker %d cannot start: %s", index, error)
        return 1
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    log.debug("ingest worker %d (pid %d) started", index, os.getpid())
    return await worker.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector.workers.worker")
    for name in ("parent", "link", "http", "door", "failures", "grpc_port"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    return asyncio.run(serve(args.link, args.http, args.door, args.failures, args.grpc_port))


if __name__ == "__main__":
    sys.exit(main())
