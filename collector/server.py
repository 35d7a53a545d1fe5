"""What every listener shares: binding its ``ServerSettings.endpoint`` with a readable error, and serving an
ASGI app with uvicorn as a component (the OTLP/HTTP receiver, the admin endpoint, the query API)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from collector.auth.listeners import ListenerSecurity, SecurityError
from collector.auth.tls import WatchedTls
from collector.component import Deadline, StartupError
from collector.config import ServerSettings


def cannot_listen(server: ServerSettings, error: OSError) -> StartupError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    return StartupError(f"cannot listen on {server.option} {server.endpoint}: {reason.lower()}")


def bind(server: ServerSettings) -> socket.socket:
    endpoint = server.endpoint
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    try:
        sock = socket.create_server((endpoint.host, endpoint.port), family=family, backlog=1024)
    except OSError as error:
        raise cannot_listen(server, error) from None
    # Accepted sockets inherit it (Linux): a response body written after its headers goes out at once
    # instead of waiting ~40 ms for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def listener_tls(security: ListenerSecurity, server: ServerSettings) -> WatchedTls | None:
    """The listener's certificates, loaded now; a file that cannot be used stops start-up."""
    try:
        return security.tls(server.name)
    except SecurityError as error:
        raise StartupError(str(error)) from None


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the collector (several servers share one loop)."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class HttpServer:
    """An ASGI app served on one listener. ``stop`` stops accepting, lets the requests in flight finish
    until the deadline, then closes what is left."""

    def __init__(
        self,
        server: ServerSettings,
        app: ASGIApp,
        security: ListenerSecurity,
        *,
        shutdown_timeout: float,
        protocol: type[asyncio.Protocol] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: a listening socket bound elsewhere (an ingest worker serves the one its parent bound)."""
        self.settings = server
        self.name = server.name
        self.port = 0
        self._app = app
        self._security = security
        self._shutdown_timeout = shutdown_timeout
        self._protocol = protocol
        self._sock = sock
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        tls = listener_tls(self._security, self.settings)
        sock = self._sock or bind(self.settings)
        self.port = sock.getsockname()[1]
        options: dict[str, Any] = {}
        if self._protocol is not None:
            options["http"] = self._protocol
        if tls is not None:
            options["ssl_context_factory"] = lambda config, default: tls.context
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=max(1, int(self._shutdown_timeout)),
            **options,
        )
        self._server = server = _Uvicorn(config)
        self._task = task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{self.name}")
        while not server.started:
            if task.done():
                task.result()
                raise StartupError(f"{self.name} server stopped during start-up")
            await asyncio.sleep(0.005)

    async def stop(self, deadline: Deadline) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        await asyncio.wait([task], timeout=deadline.remaining())
        server.force_exit = True  # past the deadline: stop waiting for connections and requests
        await asyncio.gather(task, return_exceptions=True)
