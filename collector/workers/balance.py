"""The OTLP/HTTP connections shared evenly among the ingest workers.

Every worker's event loop watches the one listening socket its parent bound, and asyncio accepts every waiting
connection each time it is woken: clients that connect together (a benchmark's clients, the exporters of a fleet
restarted at once) all went to the worker that ran first, and keep-alive kept them there (one worker did 2.5 times
the other's work). So each worker publishes how many connections it holds (``Door.connections``), and a worker
that holds more than the least loaded of its running siblings leaves a waiting connection to them, as nginx's
``accept_disabled`` does; for ``MAX_DEFER`` at most, so that a sibling that is stuck leaves nothing waiting long.
Connections still queue in the one backlog, which outlives a worker that dies.
"""

from __future__ import annotations

import socket
import time

from collector.workers.link import NOT_SERVING, Door

MAX_DEFER = 0.02  # seconds a worker leaves a waiting connection to a less loaded sibling before it takes it


class Balance:
    """This worker's open OTLP/HTTP connections, counted in the door for its siblings to read."""

    def __init__(self, door: Door, index: int) -> None:
        self._door = door
        self._index = index
        self.open = 0
        self._deferring_since: float | None = None
        door.set_connections(index, 0)

    def ahead(self) -> bool:
        """Whether a running sibling holds fewer connections than this worker (and has not been waited for
        ``MAX_DEFER`` already)."""
        fewest = min(
            (
                count
                for index, count in enumerate(self._door.connections())
                if index != self._index and count != NOT_SERVING
            ),
            default=self.open,
        )
        if self.open <= fewest:
            self._deferring_since = None
            return False
        now = time.monotonic()
        if self._deferring_since is None:
            self._deferring_since = now
        return now - self._deferring_since < MAX_DEFER

    def opened(self) -> None:
        self._deferring_since = None
        self.open += 1
        self._door.set_connections(self._index, self.open)

    def closed(self) -> None:
        self.open -= 1
        self._door.set_connections(self._index, self.open)


class _Connection(socket.socket):
    """An accepted connection that tells the balance when it closes (the event loop closes it once)."""

    balance: Balance | None = None

    def close(self) -> None:
        balance, self.balance = self.balance, None
        if balance is not None:
            balance.closed()
        super().close()


class BalancedListener(socket.socket):
    """The shared listening socket as this worker's event loop sees it: while the worker is ahead of a sibling,
    ``accept`` finds nothing to take (``BlockingIOError``, as when no connection waits), and the sibling takes it.
    Needs asyncio's own event loop, which accepts through this method (uvloop accepts in C)."""

    balance: Balance

    @classmethod
    def of(cls, listener: socket.socket, balance: Balance) -> BalancedListener:
        balanced = cls(listener.family, listener.type, listener.proto, fileno=listener.detach())
        balanced.balance = balance
        return balanced

    def accept(self) -> tuple[socket.socket, object]:
        if self.balance.ahead():
            raise BlockingIOError
        fd, address = self._accept()  # type: ignore[attr-defined]
        connection = _Connection(self.family, self.type, self.proto, fileno=fd)
        connection.balance = self.balance
        self.balance.opened()
        return connection, address
