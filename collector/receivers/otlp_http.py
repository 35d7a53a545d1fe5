"""OTLP/HTTP transport: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics`` in protobuf or JSON.

Transport only: content types, body limits, decompression and status codes; the request is then
handed to ``Ingest``. Every error body is a ``google.rpc.Status`` in the request's encoding.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from collector.observability.logs import rate_limited
from collector.observability.metrics import RECEIVER, CollectorMetrics
from collector.otlp import PayloadError, parse_json, parse_otlp_protobuf, parse_protobuf
from collector.pipeline import Backpressure, InvalidData, TooManyRequests
from collector.receivers.compression import CorruptBody, TooLarge, UnsupportedEncoding, decompress
from collector.receivers.ingest import SIGNALS as INGEST_SIGNALS
from collector.receivers.ingest import Ingest, Signal, TooManySpans

if TYPE_CHECKING:
    from collector.auth.authenticator import Refusal

log = logging.getLogger(__name__)

TRANSPORT = "http"
# What nginx logs for a client that went away before its answer; never sent (nobody is listening).
CLIENT_CLOSED_REQUEST = 499


class Codec(NamedTuple):
    content_type: str
    parse: Callable[[bytes, type[Any]], Any]
    render: Callable[[Message], bytes]


PROTOBUF = Codec("application/x-protobuf", parse_protobuf, lambda message: message.SerializeToString())
JSON = Codec(
    "application/json",
    parse_json,
    lambda message: json_format.MessageToJson(message, indent=None).encode(),
)
CODECS = {"application/x-protobuf": PROTOBUF, "application/protobuf": PROTOBUF, "application/json": JSON}


SIGNALS = {f"/v1/{signal.name}": signal for signal in INGEST_SIGNALS}
_REFUSAL_CODES = {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED}


class HttpError(Exception):
    """An answer other than 200: status, google.rpc code, metrics reason, message, extra headers."""

    def __init__(
        self, status: int, code: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.reason, self.headers = status, code, reason, headers or {}


def codec_of(content_type: str | None) -> Codec | None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return CODECS.get(media_type)


def status_response(codec: Codec, error: HttpError) -> Response:
    body = codec.render(status_pb2.Status(code=error.code, message=str(error)))
    return Response(body, error.status, headers=error.headers, media_type=codec.content_type)


class OtlpHttpReceiver:
    def __init__(
        self,
        ingest: Ingest,
        metrics: CollectorMetrics,
        *,
        max_request_size: int,
        retry_after: float,
        body_read_timeout: float = 30.0,
        read_budget: int | None = None,
    ):
        """``read_budget``: bytes of request bodies received and not yet handed on, all requests together
        (default: 64 bodies of ``max_request_size``)."""
        self._ingest = ingest
        self._metrics = metrics
        self._limit = max_request_size
        self._retry_after = str(max(1, math.ceil(retry_after)))
        self._body_timeout = body_read_timeout
        self._read_budget = read_budget or 64 * max_request_size
        self._reading = 0  # bytes of bodies being received; touched only on the event loop

    def app(self, cors_origins: tuple[str, ...] = (), guard: Callable[[ASGIApp], ASGIApp] | None = None) -> Starlette:
        """``guard`` wraps the routes in authentication, inside CORS so that refusals carry its headers."""
        middleware = []
        if cors_origins:
            middleware.append(
                Middleware(
                    CORSMiddleware,
                    allow_origins=list(cors_origins),
                    allow_methods=["POST"],
                    allow_headers=["*"],
                    max_age=7200,
                )
            )
        if guard is not None:
            middleware.append(Middleware(guard))
        routes = [Route(path, self.export, methods=["POST"]) for path in SIGNALS]
        return Starlette(
            routes=routes,
            middleware=middleware,
            exception_handlers={HTTPException: self._routing_error},
        )

    async def _routing_error(self, request: Request, exc: Exception) -> Response:
        """404 and 405 from routing, answered as a Status like every other error."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            error = HttpError(
                405,
                code_pb2.UNIMPLEMENTED,
                "method_not_allowed",
                f"method {request.method} not allowed; OTLP/HTTP export uses POST",
                {"Allow": "POST"},
            )
        else:
            error = HttpError(
                exc.status_code,
                code_pb2.NOT_FOUND,
                "not_found",
                f"no such path {request.url.path}; use /v1/traces, /v1/logs or /v1/metrics",
            )
        self._ingest.bad_request(TRANSPORT, error.reason)
        signal = SIGNALS.get(request.url.path)
        self._metrics.requests.labels(TRANSPORT, signal.name if signal else "unknown", str(error.status)).inc()
        return status_response(codec_of(request.headers.get("content-type")) or JSON, error)

    def refusal_response(self, refusal: Refusal, request_headers: Headers, headers: dict[str, str]) -> Response:
        """An authentication refusal (401, 403, 429) as a Status in the request's encoding."""
        code = _REFUSAL_CODES.get(refusal.status, code_pb2.RESOURCE_EXHAUSTED)
        error = HttpError(refusal.status, code, refusal.reason, refusal.message, headers)
        return status_response(codec_of(request_headers.get("content-type")) or JSON, error)

    async def export(self, request: Request) -> Response:
        signal = SIGNALS[request.url.path]
        started = time.perf_counter()
        codec = codec_of(request.headers.get("content-type"))
        status = 500
        try:
            response = await self._export(request, signal, codec)
            status = response.status_code
            return response
        except HttpError as error:
            status = error.status
            if error.status != 503:  # a refusal for back-pressure is counted with the spans it refused
                self._ingest.bad_request(TRANSPORT, error.reason)
            return status_response(codec or JSON, error)
        finally:
            self._metrics.requests.labels(TRANSPORT, signal.name, str(status)).inc()
            self._metrics.request_duration.labels(TRANSPORT, signal.name).observe(time.perf_counter() - started)

    async def _export(self, request: Request, signal: Signal, codec: Codec | None) -> Response:
        if codec is None:
            given = request.headers.get("content-type")
            described = f"unsupported Content-Type {given!r}" if given else "missing Content-Type"
            raise HttpError(
                415,
                code_pb2.INVALID_ARGUMENT,
                "unsupported_media_type",
                f"{described}; use application/x-protobuf or application/json",
            )
        try:
            self._ingest.door(TRANSPORT)
            body = await self._read_body(request)
            with self._ingest.admitted(TRANSPORT):
                return await self._admitted_export(request, signal, codec, body)
        except Backpressure as refusal:
            raise self._unavailable(refusal) from None

    async def _admitted_export(self, request: Request, signal: Signal, codec: Codec, body: bytes) -> Response:
        encoding = request.headers.get("content-encoding", "")
        try:
            message, handle, cut = await self._ingest.offload(self._parse, signal, codec, body, encoding)
        except TooLarge as error:
            raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, "too_large", str(error)) from None
        except UnsupportedEncoding as error:
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "unsupported_encoding", str(error)) from None
        except CorruptBody as error:
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "corrupt_body", str(error)) from None
        except PayloadError as error:
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "malformed", str(error)) from None
        self._ingest.count_cut_values(cut)
        try:
            rejection = await handle(self._ingest, message, TRANSPORT)
        except PayloadError as error:  # an OTLP/JSON document found malformed as it is decoded
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, "malformed", str(error)) from None
        except TooManySpans as error:
            raise HttpError(413, code_pb2.RESOURCE_EXHAUSTED, error.reason, str(error)) from None
        except InvalidData as error:
            raise HttpError(400, code_pb2.INVALID_ARGUMENT, error.reason, str(error)) from None
        return Response(codec.render(signal.answer(rejection)), 200, media_type=codec.content_type)

    def _parse(self, signal: Signal, codec: Codec, body: bytes, encoding: str) -> tuple[Any, Any, int]:
        """On a worker thread: the decompressed body parsed, the ``Ingest`` method that takes it, and how
        many values nested too deep were cut."""
        body = decompress(body, encoding, self._limit)
        if codec is JSON and signal.parse_json_document and signal.handle_json_document:
            return signal.parse_json_document(body), signal.handle_json_document, 0
        if codec is PROTOBUF:
            message, cut = parse_otlp_protobuf(body, signal.request_type)
            return message, signal.handle, cut
        return codec.parse(body, signal.request_type), signal.handle, 0

    def _unavailable(self, refusal: Backpressure) -> HttpError:
        return HttpError(503, code_pb2.UNAVAILABLE, refusal.reason, str(refusal), {"Retry-After": self._retry_after})

    async def _read_body(self, request: Request) -> bytes:
        """The body as sent (still compressed), within ``body_read_timeout`` and the size limit."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise HttpError(
                413,
                code_pb2.RESOURCE_EXHAUSTED,
                "too_large",
                f"body of {declared} bytes is larger than the {self._limit}-byte limit",
            )
        chunks = []
        size = held = 0
        try:
            async with asyncio.timeout(self._body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self._limit:
                        raise HttpError(
                            413,
                            code_pb2.RESOURCE_EXHAUSTED,
                            "too_large",
                            f"body is larger than the {self._limit}-byte limit",
                        )
                    self._reading += len(chunk)
                    held += len(chunk)
                    chunks.append(chunk)
                    if self._reading > self._read_budget:
                        self._metrics.refused_requests.labels(RECEIVER, TRANSPORT, TooManyRequests.reason).inc()
                        raise TooManyRequests(
                            f"{self._reading} bytes of request bodies are being received, the most this collector "
                            "holds at once; retry later"
                        )
        except TimeoutError:
            rate_limited(
                log, logging.INFO, "a client did not send its request body within %gs; answered 408", self._body_timeout
            )
            raise HttpError(
                408,
                code_pb2.DEADLINE_EXCEEDED,
                "body_timeout",
                f"the request body did not arrive within {self._body_timeout:g}s ({size} bytes came); send it faster",
                {"Connection": "close"},
            ) from None
        except ClientDisconnect:
            rate_limited(log, logging.INFO, "a client disconnected before sending its whole request body")
            raise HttpError(
                CLIENT_CLOSED_REQUEST, code_pb2.CANCELLED, "client_disconnected", "the client disconnected"
            ) from None
        finally:
            self._reading -= held
        return b"".join(chunks)
