"""One service that starts the collector's components in dependency order and stops them in reverse.

Start: check keys, certificates and exposure; open and migrate the database (and, with SQLite, start its WAL
checkpoints' thread); bind the admin endpoint;
start the maintenance scheduler and the writer thread; bind every OTLP and query listener, the OTLP ones served
here or by ``ingest.workers`` processes (``collector.workers``) that hand their records to the writer here (any
failure stops start-up with one readable line, and what started is stopped). Stop (SIGTERM/SIGINT), within
``shutdown_timeout``: turn unready, stop accepting on every listener at once and let the requests in flight
get their commit, drain the queue, stop the admin endpoint, close the database last (only once drained: a
writer still writing keeps it); exit 1 when spans were left uncommitted, and at once on a second signal.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence, Set
from typing import TypeVar

from prometheus_client import CollectorRegistry

from collector.auth.listeners import ListenerSecurity, SecurityError
from collector.component import Component, Deadline, StartupError, Together
from collector.config import Settings
from collector.maintenance.flush import FlushJob
from collector.maintenance.probe import ProbeJob
from collector.maintenance.retention import RetentionJob
from collector.maintenance.scheduler import Scheduler
from collector.maintenance.settle import Settled, SettleJob, observe_settled
from collector.model import EvaluationRecord, Records, SpanSummary
from collector.observability import logs
from collector.observability.admin import admin_app
from collector.observability.genai_metrics import GenAIMetrics
from collector.observability.metrics import CollectorMetrics
from collector.pipeline import Observers, Pipeline, WriterWork
from collector.query.server import QueryServer
from collector.receivers.listeners import new_ingest, otlp_listeners
from collector.receivers.otlp_grpc import OtlpGrpcServer
from collector.server import HttpServer
from collector.storage import StorageError, Store, Written, open_store, store_companions
from collector.workers.metrics import MergedRegistry, WorkerCounters
from collector.workers.pool import IngestWorkers

__all__ = ["Service", "StartupError", "run", "serve"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Component)

SCRAPE_CATCH_UP = 1.0  # seconds a scrape waits at most for the observer thread to observe what came before it


class _Database:
    """The write connection as a component: opened first, closed last, and only once nothing will write."""

    name = "database"

    def __init__(self, settings: Settings, in_use: Callable[[], bool]) -> None:
        self._settings = settings
        self._in_use = in_use
        self.writer: Store | None = None

    async def start(self) -> None:
        self.writer = _open_store(self._settings)

    async def stop(self, deadline: Deadline) -> None:
        writer, self.writer = self.writer, None
        if writer is not None and not self._in_use():
            writer.close()


class _Writing:
    """The pipeline's writer thread as a component: ``stop`` refuses new requests and drains the queue."""

    name = "pipeline"

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.drained = True
        self._started = False

    async def start(self) -> None:
        self.pipeline.start()
        self._started = True

    async def stop(self, deadline: Deadline) -> None:
        if not self._started:
            return
        self._started = False
        self.drained = await asyncio.to_thread(self.pipeline.close, deadline.remaining())
        if not self.drained:
            log.error(
                "shutdown deadline passed with %d spans not committed; clients will resend them",
                self.pipeline.held_spans,
            )


class Service:
    """The running collector: its components, started in dependency order and stopped in reverse."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CollectorMetrics(self.registry, label_cap=settings.metrics.max_label_values)
        self.genai_metrics = GenAIMetrics(self.registry, settings.metrics, self.metrics.label_overflow)
        self.observers = Observers(self.metrics.dropped_observations, settings.queue_capacity)
        self._components: list[Component] = []  # started (or starting), in order
        self._stopping = False
        self._started = False
        self._security: ListenerSecurity | None = None
        self._writing: _Writing | None = None
        self._query: QueryServer | None = None
        self._probe: ProbeJob | None = None
        self._listeners: list[HttpServer | OtlpGrpcServer | QueryServer] = []
        self._workers: IngestWorkers | None = None
        self._worker_counters = WorkerCounters(self.metrics.bounded_labels)

    @property
    def pipeline(self) -> Pipeline:
        assert self._writing is not None, "the collector has not started"
        return self._writing.pipeline

    @property
    def components(self) -> tuple[Component, ...]:
        """The components started (or starting), in the order they started."""
        return tuple(self._components)

    @property
    def ports(self) -> dict[str, int]:
        """The port each listener got (port 0 in the settings asks the kernel for one)."""
        ports = {listener.name: listener.port for listener in self._listeners if listener.port}
        if self._workers is not None:
            ports.update(self._workers.ports)
        return ports

    @property
    def security(self) -> ListenerSecurity:
        assert self._security is not None, "the collector has not started"
        return self._security

    def unready_reasons(self) -> list[str]:
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        if not self._started:
            reasons.append("starting")
        if self._writing is not None:
            if not self.pipeline.healthy:
                reasons.append("the last database write failed")
            if self.pipeline.saturated:
                reasons.append("the queue is saturated")
        if self._probe is not None and not self._probe.reachable:
            reasons.append("the database does not answer")
        if self._workers is not None and self._started and not self._workers.running:
            reasons.append("no ingest worker is running")
        return reasons

    async def _start(self, component: C) -> C:
        self._components.append(component)  # stopped even if its start fails half-way
        await component.start()
        return component

    async def start(self) -> None:
        settings = self.settings
        self._secure()
        try:
            await self._start_components()
        except BaseException:
            await self.stop()
            raise
        self._started = True
        ports = self.ports
        listening = ", ".join(
            f"{name.replace('_', '-')} {server.endpoint.host}:{ports[name]}"
            for name, server in settings.servers.items()
        )
        log.info("genai-collector listening: %s; database %s", listening, settings.db)
        log.info("ingest: %s", settings.ingest.describe())

    async def _start_components(self) -> None:
        settings, servers, metrics = self.settings, self.settings.servers, self.metrics
        database = await self._start(_Database(settings, in_use=lambda: not self._drained))
        writer = database.writer
        assert writer is not None
        metrics.watch_database(writer.disk_usage)
        metrics.watch_retention(settings.retention.max_size, lambda: writer.oldest_trace_ns)
        for companion in store_companions(settings.db, writer, metrics):  # SQLite's WAL checkpoints
            await self._start(companion)
        admin = admin_app(self._exposed_registry(), self.unready_reasons, self._before_scrape)
        self._listeners.append(
            await self._start(
                HttpServer(
                    servers["admin"],
                    self.security.guard("admin", admin),
                    self.security,
                    shutdown_timeout=settings.shutdown_timeout,
                )
            )
        )
        await self._start(self.observers)  # stopped after the writer, so that it sees every commit
        scheduler = Scheduler(metrics)
        self._probe = ProbeJob(writer)
        scheduler.add(self._probe, every_call=True)  # the others may wait out a pool's timeout before they fail
        scheduler.add(RetentionJob(writer, settings.retention, metrics))
        scheduler.add(SettleJob(writer, settings.snapshots, metrics, self._hand_over_settled))
        scheduler.add(FlushJob(writer))
        await self._start(scheduler)
        self._writing = await self._start(_Writing(self._pipeline(writer, scheduler)))
        self._query = QueryServer(
            settings.db,
            settings.query,
            servers["query"],
            self.security,
            self.registry,
            settings.snapshots.rules,
            shutdown_timeout=settings.shutdown_timeout,
        )
        listeners: list[Component]
        if settings.ingest.processes:
            failures = self.security.authenticator.limiter.table
            self._workers = workers = IngestWorkers(settings, self.pipeline, self._worker_counters, failures)
            metrics.watch_ingest_workers(lambda: workers.running)
            listeners = [self._workers, self._query]
        else:
            metrics.watch_ingest_workers(lambda: 0)
            ingest = await self._start(new_ingest(settings, self.pipeline, metrics))
            grpc, http = otlp_listeners(settings, ingest, metrics, self.security)
            self._listeners.extend((grpc, http))
            listeners = [grpc, http, self._query]
        self._listeners.append(self._query)
        await self._start(Together("listeners", listeners))

    def _pipeline(self, writer: Store, between_batches: WriterWork) -> Pipeline:
        settings = self.settings
        return Pipeline(
            writer,
            self.metrics,
            capacity=settings.queue_capacity,
            batch_size=settings.batch_size,
            batch_max_age=settings.batch_max_age,
            on_commit=self._hand_over_committed,
            between_batches=between_batches,
        )

    @property
    def _drained(self) -> bool:
        return self._writing is None or self._writing.drained

    def _hand_over_committed(self, batch: list[Records], written: Written) -> None:
        """On the writer thread, after a commit and before its acknowledgements: hand what observes the batch
        to the observer thread (``pipeline.Observers``), keeping only what it needs of the records."""
        evaluations = [evaluation for records in batch for evaluation in records.evaluations]
        if written.stored or evaluations:
            observation = functools.partial(
                self._observe_committed, written.stored, written.repeated_calls, evaluations
            )
            self.observers.submit(observation, len(written.stored) + len(evaluations))

    def _observe_committed(
        self,
        stored: Sequence[SpanSummary],
        repeated_calls: Set[tuple[str, str]],
        evaluations: Sequence[EvaluationRecord],
    ) -> None:
        """On the observer thread: the summaries of the spans stored for the first time feed the GenAI metrics
        (a span a client sent again is not counted again), each model call once (``collector.genai.calls``),
        and the live feed's cost tracker."""
        self.genai_metrics.observe_spans(stored, repeated_calls)
        if evaluations:
            self.genai_metrics.observe_evaluations(evaluations)
        live = self._query.live if self._query is not None else None
        if live is not None:
            live.observe_committed(stored, repeated_calls)

    def _hand_over_settled(self, settled: list[Settled]) -> None:
        self.observers.submit(functools.partial(self._observe_settled, settled), len(settled))

    def _observe_settled(self, settled: list[Settled]) -> None:
        observe_settled(self.genai_metrics, settled)
        live = self._query.live if self._query is not None else None
        if live is not None:
            live.notify_settled([each.figures.trace_id for each in settled])

    def _secure(self) -> None:
        """Keys read, certificates loaded and every listener's exposure checked, before anything opens."""
        try:
            self._security = ListenerSecurity(self.settings, self.registry)
            for server in self.settings.servers.values():
                self._security.check_exposure(server)
            for server in self.settings.servers.values():
                self._security.tls(server.name)
        except SecurityError as error:
            raise StartupError(str(error)) from None

    def _exposed_registry(self) -> CollectorRegistry:
        """What ``/metrics`` shows: with ingest workers, their counters added to this process's metrics."""
        if not self.settings.ingest.processes:
            return self.registry
        return MergedRegistry(self.registry, self._worker_counters)

    async def _before_scrape(self) -> None:
        """Every batch committed before the scrape observed (within a second), the workers' counters shipped."""
        await asyncio.to_thread(self.observers.caught_up, SCRAPE_CATCH_UP)
        if self._workers is not None:
            await self._workers.flush_counters()

    async def stop(self) -> bool:
        """Stop within ``shutdown_timeout``, each component in reverse order of start; True when every
        accepted span was committed. Safe without ``start``; a second call stops nothing more."""
        self._stopping = True  # /readyz answers unready from now on
        deadline = Deadline.after(self.settings.shutdown_timeout)
        components, self._components = self._components, []
        for component in reversed(components):
            await component.stop(deadline)
        if self._started:
            log.info("genai-collector stopped")
        return self._drained


def _open_store(settings: Settings) -> Store:
    try:
        return open_store(settings)
    except StorageError as error:
        raise StartupError(str(error)) from None


async def serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second signal: the operator will not wait for the drain
            log.warning("second signal: exiting without draining; unacknowledged requests will be resent")
            os._exit(1)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    service = Service(settings)
    try:
        await service.start()
    except StartupError as error:
        print(f"genai-collector: {error}", file=sys.stderr)
        return 1
    await stop.wait()
    log.info("signal received: draining")
    return 0 if await service.stop() else 1


def run(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings))
