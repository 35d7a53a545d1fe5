"""uvicorn's HTTP protocol with a deadline on reading a request's headers.

uvicorn closes idle keep-alive connections, but a client that connects and sends its headers one byte
at a time (or nothing at all) holds the connection forever. Here the headers of each request must be
complete within ``timeout`` of the connection or of the request's first byte; past it the connection
is closed and ``on_timeout`` counts it. The body has its own deadline in the OTLP/HTTP receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def header_timeout_protocol(timeout: float, on_timeout: Callable[[], None]) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that enforces ``timeout`` on request headers."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                on_timeout()
                self.transport.close()

    return HeaderTimeoutProtocol
