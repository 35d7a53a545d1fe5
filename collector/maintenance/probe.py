"""The database probe: one cheap round trip every second on the writer's thread, so that ``/readyz`` says the
database cannot be reached even when no write failed (a replica with no traffic while PostgreSQL is down)."""

from __future__ import annotations

from collector.storage.errors import StorageError
from collector.storage.store import Maintenance

PROBE_INTERVAL = 1.0  # seconds; the longest an idle collector says ready after its database went away


class ProbeJob:
    name = "probe"
    interval = PROBE_INTERVAL

    def __init__(self, store: Maintenance) -> None:
        self._store = store
        self.reachable = True  # False from a failed probe until one succeeds

    def run(self) -> bool:
        try:
            self._store.ping()
        except StorageError:
            self.reachable = False
            raise  # counted and logged by the scheduler, as any job's failure
        self.reachable = True
        return False
