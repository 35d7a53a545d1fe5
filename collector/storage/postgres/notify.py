"""Settled traces told to every replica: NOTIFY in the settling transaction, LISTEN on one connection each.

A replica's live feed hears of the traces any replica settled (and reads their breaches from the database),
so that WebSocket clients of every replica get them. PostgreSQL delivers a notification only once its
transaction commits, and to every listening session, the notifying one's included: on PostgreSQL the live
feed hears of settled traces only this way, never in-process as well.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence

import psycopg

from collector.observability.logs import Outage
from collector.storage.postgres.connection import Connection

log = logging.getLogger(__name__)

CHANNEL = "genai_collector_settled"
_IDS_PER_NOTIFICATION = 200  # a payload holds at most 8,000 bytes: 200 trace ids as JSON are ~7,000


def notify_settled(connection: Connection | psycopg.Cursor[tuple[object, ...]], trace_ids: Sequence[str]) -> None:
    """Queue the notifications of ``trace_ids`` in the current transaction (sent when it commits)."""
    for start in range(0, len(trace_ids), _IDS_PER_NOTIFICATION):
        payload = json.dumps(list(trace_ids[start : start + _IDS_PER_NOTIFICATION]), separators=(",", ":"))
        connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


class SettledListener:
    """A thread listening on a connection of its own; calls ``on_settled(trace_ids)`` for each notification.

    A lost connection is made again (every second while the server is away, logged as one ``Outage``); traces
    settled meanwhile are not heard of, and clients see their breaches at the next wake-up (the feed reads
    breaches from the table).
    """

    def __init__(self, dsn: str, on_settled: Callable[[list[str]], None]) -> None:
        self._dsn = dsn
        self._on_settled = on_settled
        self.outage = Outage(log, "PostgreSQL (the live feed's listener)")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="settled-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.outage.reached()
                    while not self._stopping.is_set():
                        for notification in connection.notifies(timeout=0.5):
                            self._on_settled(json.loads(notification.payload))
            except psycopg.Error as error:
                self.outage.failed(error)
                self._stopping.wait(1.0)
            except Exception:
                log.exception("live feed listener failed")
                self._stopping.wait(1.0)
