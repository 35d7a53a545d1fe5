"""The query server: one ASGI app (REST, live feed, Jaeger API) over a ``TraceReader``, served on
``query.endpoint`` as a component with ``start`` and ``stop``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException

from collector import __version__
from collector.auth.listeners import ListenerSecurity
from collector.component import Deadline
from collector.config import QuerySettings, ServerSettings, SnapshotRule
from collector.query import jaeger, rest
from collector.query.dashboard import BUNDLE, mount_dashboard
from collector.query.live import LiveFeed
from collector.query.params import BadRequest, InvalidParameter
from collector.server import HttpServer
from collector.storage import open_reader
from collector.storage.read import QueryTooBroad, ReadBusy, TraceReader

_JAEGER_PREFIXES = ("/api/services", "/api/operations", "/api/traces", "/api/dependencies")


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def _is_jaeger(request: Request) -> bool:
    return request.url.path.startswith(_JAEGER_PREFIXES)


def _is_v3(request: Request) -> bool:
    return request.url.path.startswith("/api/v3/")


async def _bad_request(request: Request, error: Exception) -> JSONResponse:
    code = getattr(error, "code", "query_too_broad" if isinstance(error, QueryTooBroad) else "bad_request")
    if _is_v3(request):
        return jaeger.v3_error(400, str(error))
    if _is_jaeger(request):
        return jaeger.jaeger_error(400, str(error))
    return _error(400, code, str(error))


async def _invalid_parameter(request: Request, error: Exception) -> JSONResponse:
    return _error(422, "invalid_parameter", str(error))


async def _busy(request: Request, error: Exception) -> JSONResponse:
    response = _error(503, "busy", str(error))
    response.headers["Retry-After"] = "1"
    return response


async def _invalid(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": list(item["loc"]), "msg": str(item["msg"]).removeprefix("Value error, ")} for item in error.errors()
    ]
    message = "; ".join(f"{'.'.join(str(part) for part in d['loc'][1:]) or d['loc'][0]}: {d['msg']}" for d in details)
    return _error(422, "invalid_parameter", message, details=details)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if _is_v3(request):
        return jaeger.v3_error(error.status_code, str(error.detail))
    if _is_jaeger(request):
        return jaeger.jaeger_error(error.status_code, str(error.detail))
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
    return _error(error.status_code, code, str(error.detail))


def query_app(
    reader: TraceReader,
    live: LiveFeed,
    snapshot_rules: tuple[SnapshotRule, ...] = (),
    dashboard: Path | None = BUNDLE,
) -> FastAPI:
    app = FastAPI(
        title="genai-collector query API",
        version=__version__,
        description="Traces, GenAI figures, breaches and evaluations; see docs/query-api.md.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.reader = reader
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(QueryTooBroad, _bad_request)
    app.add_exception_handler(InvalidParameter, _invalid_parameter)
    app.add_exception_handler(ReadBusy, _busy)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(rest.router(snapshot_rules))
    app.include_router(jaeger.router())

    @app.websocket("/api/v1/live")
    async def live_feed(websocket: WebSocket) -> None:
        await live.serve(websocket)

    if dashboard is not None:
        mount_dashboard(app, dashboard)
    return app


class QueryServer:
    """The read side as a component: its reader (own connections, never the writer's), the live feed, and
    the ASGI app on the query listener. ``stop`` disconnects the live-feed clients first, so that the
    listener stops without waiting for them, then stops the listener, then closes the read connections."""

    name: Final = "query"

    def __init__(
        self,
        db: Path | str,  # a file path or an engine URL (open_reader)
        settings: QuerySettings,
        server: ServerSettings,
        security: ListenerSecurity,
        registry: CollectorRegistry,
        snapshot_rules: tuple[SnapshotRule, ...],
        *,
        shutdown_timeout: float,
    ) -> None:
        self._db = db
        self._settings = settings
        self._server_settings = server
        self._security = security
        self._registry = registry
        self._snapshot_rules = snapshot_rules
        self._shutdown_timeout = shutdown_timeout
        self.reader: TraceReader | None = None
        self.live: LiveFeed | None = None
        self._listener: HttpServer | None = None

    @property
    def port(self) -> int:
        return self._listener.port if self._listener is not None else 0

    async def start(self) -> None:
        settings = self._settings
        self.reader = open_reader(self._db, settings)
        live = LiveFeed(
            self.reader,
            self._registry,
            queue_limit=settings.live_queue_limit,
            send_timeout=settings.live_send_timeout,
            heartbeat=settings.live_heartbeat,
        )
        app = query_app(self.reader, live, self._snapshot_rules, settings.dashboard or BUNDLE)
        await live.start()
        self.live = live
        self._listener = HttpServer(
            self._server_settings,
            self._security.guard(self.name, app),
            self._security,
            shutdown_timeout=self._shutdown_timeout,
        )
        await self._listener.start()

    async def stop(self, deadline: Deadline) -> None:
        live, listener, reader = self.live, self._listener, self.reader
        self.live = self._listener = self.reader = None
        if live is not None:
            await live.stop()
        if listener is not None:
            await listener.stop(deadline)
        if reader is not None:  # its read connections close before the writer's, whose close checkpoints
            await asyncio.to_thread(reader.close)
