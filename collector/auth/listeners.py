"""Which scope each listener needs, the guards that enforce it, and safe defaults at start-up.

A scope is enforced as soon as one configured key carries it: ``ingest`` on OTLP over HTTP and gRPC,
``read`` on the query API and live feed (unless ``allow_unauthenticated_reads``), ``admin`` on ``/metrics``
when ``protect_metrics`` is set. ``/healthz``, ``/readyz``, gRPC health and the dashboard's static files stay
open. A listener on a non-loopback address that nobody guards is logged at start; the query server refuses
to start there unless reads are explicitly allowed without a key.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from collector.auth.authenticator import Authenticator
from collector.auth.failures import FailureTable
from collector.auth.grpc import AuthInterceptor
from collector.auth.http import AuthMiddleware, Render, json_refusal
from collector.auth.keys import KeyFileError, KeyRing
from collector.auth.sessions import LOGIN_PATH, LOGOUT_PATH, SessionEndpoints, Sessions
from collector.auth.tls import TlsError, WatchedTls
from collector.config import Listener, Scope, ServerSettings, Settings

log = logging.getLogger(__name__)

QUERY_API_PREFIX = "/api/"


class SecurityError(Exception):
    """Keys, certificates or an exposure the collector will not start with; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


class ListenerSecurity:
    """Built once at start: the keys, the one authenticator, the sessions, and per listener its guard and TLS."""

    def __init__(self, settings: Settings, registry: CollectorRegistry, failures: FailureTable | None = None) -> None:
        """``failures``: the table of wrong keys by address shared with the other processes (an ingest worker's)."""
        self.auth = settings.auth
        self.servers = settings.servers
        self._tls: dict[Listener, WatchedTls | None] = {}
        try:
            keys = KeyRing(settings.auth.api_keys)
        except KeyFileError as error:
            raise SecurityError(str(error)) from None
        self.authenticator = Authenticator(
            keys, registry, max_failures_per_minute=settings.auth.max_failures_per_minute, failures=failures
        )
        self.sessions = Sessions(settings.auth.session_ttl)

    def guarded(self, listener: Listener) -> bool:
        """Whether any request to ``listener`` needs a key."""
        return self.servers[listener].auth is not None

    def scope_for(self, listener: Listener) -> Callable[[str], Scope | None]:
        """The scope a path of ``listener`` needs (None: open): on the admin listener only ``/metrics`` is
        guarded, on the query listener the API but not its login and logout (nor the dashboard's files)."""
        needed = self.servers[listener].auth
        if listener == "admin":
            return lambda path: needed if path == "/metrics" else None
        if listener == "query":
            open_paths = (LOGIN_PATH, LOGOUT_PATH)
            return lambda path: needed if path.startswith(QUERY_API_PREFIX) and path not in open_paths else None
        return lambda path: needed

    def guard(self, listener: Listener, app: ASGIApp, render: Render = json_refusal) -> ASGIApp:
        """``app`` behind the listener's authentication (the query listener also answers login and logout)."""
        if not self.guarded(listener):
            return app
        if listener == "query":
            app = SessionEndpoints(app, sessions=self.sessions, authenticator=self.authenticator, listener=listener)
        return AuthMiddleware(
            app,
            authenticator=self.authenticator,
            listener=listener,
            scope_for=self.scope_for(listener),
            render=render,
            sessions=self.sessions if listener == "query" else None,
        )

    def grpc_interceptors(
        self, retry_metadata: Callable[..., tuple[tuple[str, bytes], ...]]
    ) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        if not self.guarded("otlp_grpc"):
            return []
        return [AuthInterceptor(self.authenticator, "otlp_grpc", "ingest", retry_metadata)]

    def tls(self, listener: Listener) -> WatchedTls | None:
        """The listener's certificates (None: plaintext), loaded on the first call and kept."""
        if listener not in self._tls:
            files = self.servers[listener].tls
            try:
                self._tls[listener] = None if files is None else WatchedTls(listener, files)
            except TlsError as error:
                raise SecurityError(str(error)) from None
        return self._tls[listener]

    def check_exposure(self, server: ServerSettings) -> None:
        """Warn about a listener anyone on the network can use; refuse it for the query server."""
        listener, endpoint = server.name, server.endpoint
        if is_loopback(endpoint.host):
            return
        if listener == "query" and server.auth is None:
            if not self.auth.allow_unauthenticated_reads:
                raise SecurityError(
                    f"the query server will not listen on {endpoint} without an API key: anyone reaching it "
                    "could read every prompt and completion. Add an auth.api_keys entry with the read scope, "
                    "listen on 127.0.0.1, or set auth.allow_unauthenticated_reads: true"
                )
            log.warning(
                "query listens on %s and serves reads without a key (auth.allow_unauthenticated_reads)", endpoint
            )
        elif listener in ("otlp_grpc", "otlp_http") and server.auth is None:
            log.warning(
                "%s listens on %s with no API key: anyone who reaches it can write spans "
                "(add an auth.api_keys entry with the ingest scope)",
                listener,
                endpoint,
            )
        elif listener == "admin" and not self.auth.api_keys:
            log.warning(
                "admin listens on %s with no API key: anyone who reaches it can read /metrics "
                "(set auth.protect_metrics with a key of the admin scope)",
                endpoint,
            )
