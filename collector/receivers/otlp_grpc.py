"""OTLP/gRPC transport: ``TraceService``, ``LogsService`` and ``MetricsService`` ``Export``, plus grpc.health.v1.

Handlers receive the raw message bytes so that a corrupt payload is answered INVALID_ARGUMENT
(not gRPC's INTERNAL) and an oversized one RESOURCE_EXHAUSTED with a counted, readable message.
gRPC itself (gzip included) enforces a hard ceiling of ``HARD_LIMIT_FACTOR`` times our limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

# grpc-stubs (1.53) predates the asyncio health servicer
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from collector.auth.listeners import ListenerSecurity
from collector.component import Deadline, StartupError
from collector.config import ServerSettings
from collector.observability.metrics import CollectorMetrics
from collector.otlp import PayloadError, parse_otlp_protobuf
from collector.pipeline import Backpressure, InvalidData
from collector.receivers.ingest import SIGNALS, Ingest, Signal, TooManySpans
from collector.server import bind, listener_tls

TRANSPORT = "grpc"
HARD_LIMIT_FACTOR = 4


class GrpcError(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


def retry_metadata(seconds: float, message: str, code: int = code_pb2.UNAVAILABLE) -> tuple[tuple[str, bytes], ...]:
    """Trailers carrying a RetryInfo: inside ``grpc-status-details-bin`` (the gRPC standard, read by
    the Go exporters) and as ``google.rpc.retryinfo-bin`` (read by the Python exporter)."""
    whole = math.floor(seconds)
    retry_info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    )
    status = status_pb2.Status(code=code, message=message)
    status.details.add().Pack(retry_info)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", retry_info.SerializeToString()),
    )


class OtlpGrpcReceiver:
    def __init__(self, ingest: Ingest, metrics: CollectorMetrics, *, max_receive_size: int, retry_after: float):
        self._ingest = ingest
        self._metrics = metrics
        self._limit = max_receive_size
        self._retry_after = retry_after

    def server(
        self,
        health: health_aio.HealthServicer,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        *,
        shared: bool = False,
    ) -> grpc.aio.Server:
        """``shared``: the port is shared with the other ingest workers (``SO_REUSEPORT``); otherwise a port in
        use must fail start-up, not be shared."""
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self._limit * HARD_LIMIT_FACTOR),
                ("grpc.so_reuseport", 1 if shared else 0),
            ],
        )
        server.add_generic_rpc_handlers([self._handlers(signal) for signal in SIGNALS])
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        return server

    def _handlers(self, signal: Signal) -> grpc.GenericRpcHandler[bytes, Any]:
        export = grpc.unary_unary_rpc_method_handler(
            self._exporter(signal),
            request_deserializer=None,  # raw bytes: we parse, to answer errors as the spec says
            response_serializer=lambda message: message.SerializeToString(),
        )
        return grpc.method_handlers_generic_handler(signal.grpc_service, {"Export": export})

    def _exporter(self, signal: Signal) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, Any]], Awaitable[Any]]:
        async def export(body: bytes, context: grpc.aio.ServicerContext[bytes, Any]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.INTERNAL
            try:
                answer = await self._export(signal, body)
                code = grpc.StatusCode.OK
                return answer
            except GrpcError as error:
                code = error.code
                self._ingest.bad_request(TRANSPORT, error.reason)
                await context.abort(error.code, str(error))
            except Backpressure as refusal:
                code = grpc.StatusCode.UNAVAILABLE
                await context.abort(
                    code, str(refusal), trailing_metadata=retry_metadata(self._retry_after, str(refusal))
                )
            finally:
                self._metrics.requests.labels(TRANSPORT, signal.name, code.name).inc()
                self._metrics.request_duration.labels(TRANSPORT, signal.name).observe(time.perf_counter() - started)

        return export

    async def _export(self, signal: Signal, body: bytes) -> Any:
        with self._ingest.admitted(TRANSPORT):
            return await self._admitted_export(signal, body)

    async def _admitted_export(self, signal: Signal, body: bytes) -> Any:
        if len(body) > self._limit:
            raise GrpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too_large",
                f"message of {len(body)} bytes is larger than the {self._limit}-byte limit",
            )
        try:
            request, cut = await self._ingest.offload(parse_otlp_protobuf, body, signal.request_type)
        except PayloadError as error:
            raise GrpcError(grpc.StatusCode.INVALID_ARGUMENT, "malformed", str(error)) from None
        self._ingest.count_cut_values(cut)
        try:
            return signal.answer(await signal.handle(self._ingest, request, TRANSPORT))
        except TooManySpans as error:
            raise GrpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, error.reason, str(error)) from None
        except InvalidData as error:
            raise GrpcError(grpc.StatusCode.INVALID_ARGUMENT, error.reason, str(error)) from None


async def serving_health() -> health_aio.HealthServicer:
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    for signal in SIGNALS:
        await health.set(signal.grpc_service, health_pb2.HealthCheckResponse.SERVING)
    return health


class OtlpGrpcServer:
    """The OTLP/gRPC listener as a component. ``stop`` turns the health service to NOT_SERVING, stops
    accepting and lets the calls in flight finish until the deadline.

    ``shared_port``: in an ingest worker, the port its parent reserved, bound again with ``SO_REUSEPORT`` beside
    the other workers (the kernel spreads connections among them)."""

    name = "otlp_grpc"

    def __init__(
        self,
        server: ServerSettings,
        receiver: OtlpGrpcReceiver,
        security: ListenerSecurity,
        *,
        shared_port: int | None = None,
    ) -> None:
        if shared_port is not None:
            server = server.model_copy(update={"endpoint": server.endpoint.model_copy(update={"port": shared_port})})
        self.settings = server
        self._shared = shared_port is not None
        self.port = 0
        self._receiver = receiver
        self._security = security
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None

    async def start(self) -> None:
        endpoint = self.settings.endpoint
        if endpoint.port and not self._shared:  # find out the real reason a port cannot be had before gRPC hides it
            bind(self.settings).close()
        self._health = await serving_health()
        tls = listener_tls(self._security, self.settings)
        interceptors = self._security.grpc_interceptors(retry_metadata)
        server = self._receiver.server(self._health, interceptors, shared=self._shared)
        try:
            if tls is None:
                port = server.add_insecure_port(str(endpoint))
            else:
                port = server.add_secure_port(str(endpoint), tls.grpc_credentials())
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(f"cannot listen on {self.settings.option} {endpoint}: address in use or not available")
        self.port = port
        self._server = server
        await server.start()

    async def stop(self, deadline: Deadline) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        assert self._health is not None
        await self._health.enter_graceful_shutdown()
        stopping = asyncio.ensure_future(server.stop(grace=deadline.remaining()))
        await asyncio.wait([stopping], timeout=deadline.remaining())
