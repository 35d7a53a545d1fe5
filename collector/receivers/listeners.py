"""The OTLP ingest stage as components: ``Ingest`` and its two listeners, built the same way whether the main
process receives or each ingest worker does (``collector.workers``)."""

from __future__ import annotations

import socket

from collector.auth.listeners import ListenerSecurity
from collector.config import Settings
from collector.genai.transform import Transform
from collector.observability.metrics import RECEIVER, CollectorMetrics
from collector.pipeline import Intake
from collector.receivers.http_protocol import header_timeout_protocol
from collector.receivers.ingest import WORKERS, Ingest
from collector.receivers.otlp_grpc import OtlpGrpcReceiver, OtlpGrpcServer
from collector.receivers.otlp_http import TRANSPORT as HTTP_TRANSPORT
from collector.receivers.otlp_http import OtlpHttpReceiver
from collector.server import HttpServer


def new_ingest(settings: Settings, pipeline: Intake, metrics: CollectorMetrics, *, threads: int = WORKERS) -> Ingest:
    """``threads``: how many decode and transform requests at once (``Ingest``)."""
    return Ingest(
        pipeline,
        lambda: Transform(settings),
        metrics,
        max_concurrent_requests=settings.max_concurrent_requests,
        max_spans_per_request=settings.max_spans_per_request,
        workers=threads,
    )


def otlp_listeners(
    settings: Settings,
    ingest: Ingest,
    metrics: CollectorMetrics,
    security: ListenerSecurity,
    *,
    http_socket: socket.socket | None = None,
    grpc_port: int | None = None,
) -> tuple[OtlpGrpcServer, HttpServer]:
    """The OTLP/gRPC and OTLP/HTTP listeners; ``http_socket`` and ``grpc_port`` are what an ingest worker's
    parent bound and reserved for it (None: bind the configured endpoints)."""
    servers = settings.servers
    grpc_receiver = OtlpGrpcReceiver(
        ingest, metrics, max_receive_size=settings.grpc_max_receive_size, retry_after=settings.retry_after
    )
    http_receiver = OtlpHttpReceiver(
        ingest,
        metrics,
        max_request_size=settings.max_request_size,
        retry_after=settings.retry_after,
        body_read_timeout=settings.body_read_timeout,
        read_budget=settings.max_concurrent_requests * settings.max_request_size,
    )

    def header_timed_out() -> None:
        metrics.bad_requests.labels(RECEIVER, HTTP_TRANSPORT, "header_timeout").inc()

    return (
        OtlpGrpcServer(servers["otlp_grpc"], grpc_receiver, security, shared_port=grpc_port),
        HttpServer(
            servers["otlp_http"],
            http_receiver.app(
                settings.cors_origins,
                lambda app: security.guard("otlp_http", app, http_receiver.refusal_response),
            ),
            security,
            shutdown_timeout=settings.shutdown_timeout,
            protocol=header_timeout_protocol(settings.header_read_timeout, header_timed_out),
            sock=http_socket,
        ),
    )
