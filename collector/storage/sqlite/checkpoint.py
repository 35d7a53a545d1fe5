"""The routine WAL checkpoint, on a connection and a thread of its own, off the writer thread.

A passive checkpoint copies the WAL's committed frames into the database file so that the writer can start the
WAL over; it does not need the write lock, so it runs while the writer commits (SQLite lets one checkpointer at a
time run: a second one gets ``SQLITE_BUSY`` at once, and tries again a round later). apsw releases the GIL while it
runs. Run between two batches on the writer thread (retention's step did it), it held each batch queued behind it
for its whole length, 5-100 ms a round at half the maximum ingest (docs/performance.md, "Retention's checkpoint
off the writer thread").

The checkpoints that must happen at a given point stay with retention, on the write connection (the size bound's,
the vacuum's, the full disk's), and so does SQLite's automatic checkpoint at half the WAL's bound
(``connection.bound_wal``), for a WAL that grows faster than a round empties it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import apsw

from collector.component import Deadline, StartupError
from collector.observability.logs import rate_limited
from collector.observability.metrics import CollectorMetrics
from collector.storage.sqlite.connection import open_connection

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two rounds
JOB_NAME = "checkpoint"  # its label in the maintenance metrics
# Passes a round makes at most while the writer commits frames behind it: the writer starts the WAL over only
# when, at the start of its transaction, every frame is in the database file; the frames a pass leaves are those
# of a batch or two, which the next pass copies in a few milliseconds.
CATCH_UP_PASSES = 3


class WalCheckpointer:
    """A passive checkpoint of the SQLite file at ``path`` every ``interval`` seconds, as a component.

    Its rounds are counted as the maintenance job ``checkpoint`` (duration, last run, errors); a failure is
    logged (rate-limited) and the next round comes as usual: nothing raises out of its thread."""

    name = "wal-checkpoint"

    def __init__(self, path: Path, metrics: CollectorMetrics, *, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._metrics = metrics
        self._connection: apsw.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        try:
            # Not read-only, as the readers' are: a checkpoint writes the database file (it never writes a transaction).
            self._connection = open_connection(self.path)
        except apsw.Error as error:
            raise StartupError(f"cannot open the database {self.path} for its WAL checkpoints: {error}") from None
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    async def stop(self, deadline: Deadline) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, deadline.remaining())
            if thread.is_alive():  # a checkpoint past the deadline: the process exits without it
                return
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.checkpoint()

    def checkpoint(self) -> tuple[int, int] | None:
        """One round of passive checkpoints (``CATCH_UP_PASSES`` at most): the WAL's frames and how many of them
        are in the database file after the last pass, or None when none ran (another checkpoint was running, the
        disk is full: retention's business, or it failed)."""
        connection = self._connection
        if connection is None:
            return None
        metrics = self._metrics
        started = time.perf_counter()
        frames: tuple[int, int] | None = None
        try:
            for _ in range(CATCH_UP_PASSES):
                frames = connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
                if frames[1] >= frames[0]:
                    break
        except (apsw.BusyError, apsw.FullError):
            pass
        except Exception as error:  # counted and logged; the next round tries again
            metrics.maintenance_errors.labels(JOB_NAME).inc()
            rate_limited(log, logging.ERROR, "the WAL checkpoint of %s failed: %r", self.path, error)
        metrics.maintenance_duration.labels(JOB_NAME).observe(time.perf_counter() - started)
        metrics.maintenance_last_run.labels(JOB_NAME).set(time.time())
        return frames
