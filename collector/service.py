"""Wires the pieces together and owns start and stop.

Start: open and migrate the database, start the writer thread, bind every port (any failure stops
start-up with one readable line). Stop (SIGTERM/SIGINT): turn unready, stop accepting, let the
requests in flight get their commit, drain the queue, close the database, exit 0 within the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time

import apsw
import grpc
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from collector.auth.listeners import ListenerSecurity, SecurityError
from collector.auth.tls import WatchedTls
from collector.config import Endpoint, Settings
from collector.genai.transform import Transform
from collector.model import Records
from collector.observability import logs
from collector.observability.admin import admin_app
from collector.observability.genai_metrics import GenAIMetrics
from collector.observability.metrics import RECEIVER, CollectorMetrics
from collector.pipeline import Pipeline
from collector.query.server import QueryServer
from collector.receivers.http_protocol import header_timeout_protocol
from collector.receivers.ingest import Ingest
from collector.receivers.otlp_grpc import OtlpGrpcReceiver, retry_metadata, serving_health
from collector.receivers.otlp_http import TRANSPORT as HTTP_TRANSPORT
from collector.receivers.otlp_http import OtlpHttpReceiver
from collector.storage.sqlite.writer import SpanWriter, Written

log = logging.getLogger(__name__)

SETTLE_CHUNK = 500  # traces settled per transaction; more rounds follow at once while traces are due


class StartupError(Exception):
    """The collector cannot start; the message says what to change."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the collector (several servers share one loop)."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


def _listen(name: str, endpoint: Endpoint) -> socket.socket:
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    try:
        sock = socket.create_server((endpoint.host, endpoint.port), family=family, backlog=1024)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise StartupError(f"cannot listen on {name} {endpoint}: {reason.lower()}") from None
    # Accepted sockets inherit it (Linux): a response body written after its headers goes out at once
    # instead of waiting ~40 ms for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Collector:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CollectorMetrics(self.registry, label_cap=settings.metrics.max_label_values)
        self.genai_metrics = GenAIMetrics(self.registry, settings.metrics, self.metrics.label_overflow)
        self.ports: dict[str, int] = {}
        self._stopping = False
        self._started = False
        self._writer: SpanWriter | None = None
        self._pipeline: Pipeline | None = None
        self._ingest: Ingest | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http_servers: list[tuple[_Server, asyncio.Task[None]]] = []
        self._security: ListenerSecurity | None = None
        self._next_retention = self._next_settle = 0.0
        self._retention_more = self._settle_more = False
        self._query: QueryServer | None = None

    @property
    def pipeline(self) -> Pipeline:
        assert self._pipeline is not None, "the collector has not started"
        return self._pipeline

    def unready_reasons(self) -> list[str]:
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        if self._pipeline is None:
            reasons.append("starting")
        else:
            if not self._pipeline.healthy:
                reasons.append("the last database write failed")
            if self._pipeline.saturated:
                reasons.append("the queue is saturated")
        return reasons

    def _observe_committed(self, batch: list[Records], written: Written) -> None:
        """On the writer thread, after a commit: the spans stored for the first time feed the GenAI metrics
        (a span a client sent again is not counted again), each model call once (``collector.genai.calls``)."""
        self.genai_metrics.observe_spans(written.stored, written.repeated_calls)
        for records in batch:
            if records.evaluations:
                self.genai_metrics.observe_evaluations(records.evaluations)
        if self._query is not None:
            self._query.live.observe_committed(written.stored, written.repeated_calls)

    def _maintain(self) -> bool:
        """On the writer thread between batches: retention when due, then settling when due; each that
        has more to do than one round (more traces to delete, or due to settle) runs again after the
        next batch instead of waiting for its interval. True asks the pipeline to come back so."""
        assert self._writer is not None
        now = time.monotonic()
        try:
            if self._retention_more or now >= self._next_retention:
                self._next_retention = now + self.settings.retention.interval
                self._retention_more = False  # stays so if the step fails: back to the interval
                self._retention_more = self._apply_retention()
        finally:
            if self._settle_more or now >= self._next_settle:
                self._next_settle = now + self.settings.snapshots.interval
                self._settle_more = False
                self._settle_more = self._settle_traces()
        return self._retention_more or self._settle_more

    def _apply_retention(self) -> bool:
        assert self._writer is not None
        metrics = self.metrics
        more = False
        for deleted in self._writer.retain():
            more = more or deleted.more
            if deleted.traces or deleted.spans:
                metrics.retention_deleted_traces.labels(deleted.reason).inc(deleted.traces)
                metrics.retention_deleted_spans.labels(deleted.reason).inc(deleted.spans)
            if deleted.snapshots:
                metrics.retention_deleted_snapshots.inc(deleted.snapshots)
            if deleted.reclaimed_bytes > 0:
                metrics.retention_reclaimed_bytes.inc(deleted.reclaimed_bytes)
        return more

    def _settle_traces(self) -> bool:
        """On the writer thread: settle quiet traces, write their snapshots, count them and their breaches.
        True when more traces are due than one round settles: the pipeline then comes back after the next
        batch instead of waiting for the interval, so settling keeps up with any ingest rate."""
        assert self._writer is not None
        settled_now = self._writer.settle(self.settings.snapshots, limit=SETTLE_CHUNK)
        if self._query is not None:
            self._query.live.notify_settled([settled.figures.trace_id for settled in settled_now])
        for settled in settled_now:
            figures = settled.figures
            self.metrics.settled_traces.inc()
            self.genai_metrics.observe_trace(figures.service_name, figures.duration_seconds, figures.trace_id)
            for snapshot in settled.snapshots:
                self.genai_metrics.observe_snapshot(
                    snapshot.metric, snapshot.rule, breached_now=snapshot in settled.newly_breached
                )
        self.metrics.oldest_unsettled_at = self._writer.oldest_unsettled()
        return len(settled_now) == SETTLE_CHUNK

    @property
    def security(self) -> ListenerSecurity:
        assert self._security is not None, "the collector has not started"
        return self._security

    def _secure(self) -> None:
        """Keys read, certificates loaded and every listener's exposure checked, before anything opens."""
        settings = self.settings
        try:
            self._security = ListenerSecurity(settings, self.registry)
            for listener, endpoint in self._endpoints().items():
                self._security.check_exposure(listener, endpoint)
        except SecurityError as error:
            raise StartupError(str(error)) from None

    def _endpoints(self) -> dict[str, Endpoint]:
        settings = self.settings
        return {
            "otlp_grpc": settings.grpc_endpoint,
            "otlp_http": settings.http_endpoint,
            "admin": settings.admin_endpoint,
            "query": settings.query.endpoint,
        }

    def _tls(self, listener: str) -> WatchedTls | None:
        try:
            return self.security.tls(listener)
        except SecurityError as error:
            raise StartupError(str(error)) from None

    async def start(self) -> None:
        settings = self.settings
        self._secure()
        self._writer = _open_writer(settings)
        self.metrics.watch_database(settings.db)
        retention = self._writer.retention
        self.metrics.watch_retention(settings.retention.max_size, lambda: retention.oldest_trace_ns)
        self._pipeline = Pipeline(
            self._writer,
            self.metrics,
            capacity=settings.queue_capacity,
            batch_size=settings.batch_size,
            batch_max_age=settings.batch_max_age,
            on_commit=self._observe_committed,
            tick=(min(settings.snapshots.interval, settings.retention.interval), self._maintain),
        )
        self._pipeline.start()
        self._ingest = ingest = Ingest(
            self._pipeline,
            lambda: Transform(settings),
            self.metrics,
            max_concurrent_requests=settings.max_concurrent_requests,
            max_spans_per_request=settings.max_spans_per_request,
        )
        try:
            await self._start_grpc(ingest)
            http = OtlpHttpReceiver(
                ingest,
                self.metrics,
                max_request_size=settings.max_request_size,
                retry_after=settings.retry_after,
                body_read_timeout=settings.body_read_timeout,
                read_budget=settings.max_concurrent_requests * settings.max_request_size,
            )
            protocol = header_timeout_protocol(settings.header_read_timeout, self._header_timed_out)
            guard = lambda app: self.security.guard("otlp_http", app, http.refusal_response)  # noqa: E731
            await self._start_http(
                "otlp_http", settings.http_endpoint, http.app(settings.cors_origins, guard), protocol=protocol
            )
            admin = admin_app(self.registry, self.unready_reasons)
            await self._start_http("admin", settings.admin_endpoint, self.security.guard("admin", admin))
            self._query = QueryServer(settings.db, settings.query, self.registry, settings.snapshots.rules)
            await self._query.start()
            await self._start_http("query", settings.query.endpoint, self.security.guard("query", self._query.app))
        except BaseException:
            await self.stop()
            raise
        self._started = True
        log.info(
            "genai-collector listening: otlp-grpc %s:%d, otlp-http %s:%d, admin %s:%d, query %s:%d; database %s",
            settings.grpc_endpoint.host,
            self.ports["otlp_grpc"],
            settings.http_endpoint.host,
            self.ports["otlp_http"],
            settings.admin_endpoint.host,
            self.ports["admin"],
            settings.query.endpoint.host,
            self.ports["query"],
            settings.db,
        )

    async def _start_grpc(self, ingest: Ingest) -> None:
        endpoint = self.settings.grpc_endpoint
        receiver = OtlpGrpcReceiver(
            ingest,
            self.metrics,
            max_receive_size=self.settings.grpc_max_receive_size,
            retry_after=self.settings.retry_after,
        )
        if endpoint.port:  # find out the real reason a port cannot be had before gRPC hides it
            _listen("grpc_endpoint", endpoint).close()
        self._health = await serving_health()
        tls = self._tls("otlp_grpc")
        self._grpc = receiver.server(self._health, self.security.grpc_interceptors(retry_metadata))
        try:
            if tls is None:
                port = self._grpc.add_insecure_port(str(endpoint))
            else:
                port = self._grpc.add_secure_port(str(endpoint), tls.grpc_credentials())
        except RuntimeError:
            port = 0
        if port == 0:
            self._grpc = None
            raise StartupError(f"cannot listen on grpc_endpoint {endpoint}: address in use or not available")
        self.ports["otlp_grpc"] = port
        await self._grpc.start()

    def _header_timed_out(self) -> None:
        self.metrics.bad_requests.labels(RECEIVER, HTTP_TRANSPORT, "header_timeout").inc()

    async def _start_http(
        self, name: str, endpoint: Endpoint, app: ASGIApp, *, protocol: type[asyncio.Protocol] | None = None
    ) -> None:
        tls = self._tls(name)
        sock = _listen("query.endpoint" if name == "query" else f"{name.replace('otlp_', '')}_endpoint", endpoint)
        self.ports[name] = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=max(1, int(self.settings.shutdown_timeout)),
            **({"http": protocol} if protocol is not None else {}),
            **({"ssl_context_factory": lambda config, default: tls.context} if tls is not None else {}),
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{name}")
        self._http_servers.append((server, task))
        while not server.started:
            if task.done():
                task.result()
                raise StartupError(f"{name} server stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self) -> bool:
        """Stop within ``shutdown_timeout``; True when every accepted span was committed."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        otlp_servers = [(server, task) for server, task in self._http_servers if task.get_name() != "uvicorn-admin"]
        waits = []
        if self._grpc is not None:
            await self._health.enter_graceful_shutdown()
            waits.append(asyncio.ensure_future(self._grpc.stop(grace=self.settings.shutdown_timeout)))
        if self._query is not None:
            await self._query.stop_feeds()
        for server, task in otlp_servers:
            server.should_exit = True
            waits.append(task)
        if waits:
            await asyncio.wait(waits, timeout=max(0.0, deadline - loop.time()))
        if self._query is not None:  # its read connections close before the writer's, whose close checkpoints
            await self._query.stop()
        drained = True
        if self._pipeline is not None:
            drained = await asyncio.to_thread(self._pipeline.close, max(0.0, deadline - loop.time()))
            if not drained:
                log.error(
                    "shutdown deadline passed with %d spans not committed; clients will resend them",
                    self._pipeline.held_spans,
                )
        if self._writer is not None and drained:
            self._writer.close()
        if self._ingest is not None:
            self._ingest.close()
        for server, task in self._http_servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self._http_servers), return_exceptions=True)
        if self._started:
            log.info("genai-collector stopped")
        return drained


def _open_writer(settings: Settings) -> SpanWriter:
    path = settings.db
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SpanWriter(path, synchronous=settings.sqlite_synchronous, retention=settings.retention)
    except OSError as error:
        raise StartupError(f"cannot create the database directory {path.parent}: {error.strerror}") from None
    except apsw.Error as error:
        raise StartupError(f"cannot open the database {path} for writing: {error}") from None


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
    collector = Collector(settings)
    try:
        await collector.start()
    except StartupError as error:
        print(f"genai-collector: {error}", file=sys.stderr)
        return 1
    await stop.wait()
    log.info("signal received: draining")
    return 0 if await collector.stop() else 1


def run(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings))
