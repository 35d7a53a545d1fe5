"""The routine WAL checkpoint, on a connection and a thread of its own, off the writer thread.

A passive checkpoint copies the WAL's committed frames into the database file so that the writer can start the
WAL over; it does not need the write lock, so it runs while the writer commits (SQLite lets one checkpointer at a
time run: a second one gets ``SQLITE_BUSY`` at once, and tries again a round later). apsw releases the GIL while it
runs. Run between two batches on the writer thread (retention's step did it), it held each batch queued behind it
for its whole length, 5-100 ms a round at half the maximum ingest (docs/performance.md, "Retention's checkpoint
off the writer thread").

Given the write connection (``writer``), it also takes over SQLite's automatic checkpoint, which the writer ran
inside its COMMIT once the WAL held half its bound (``connection.bound_wal``, ``wal_autocheckpoint``): copying the
frames the last round left (up to a second of them) and syncing the database file, 25-100 ms about once a second at
the maximum ingest. SQLite starts the WAL over only when a write transaction begins while every frame is in the
database file (``walRestartLog``, when the writer's snapshot took read lock 0), and a writer that commits back to
back almost never begins at such a moment, so the WAL grew to that mark whatever the routine rounds copied. A WAL
hook on the write connection (``committed``, after each commit, on the writer's thread, no lock held) replaces
SQLite's: every eighth of the mark (``ROUNDS_PER_RESTART``; at most once a commit) it wakes this thread for a round,
which copies the frames committed so far while the writer goes on; when the WAL reaches the mark, the writer waits
for a round that begins after that commit: nothing is committed meanwhile, so that round copies the rest (the last
batch or two) and syncs, and the writer's next transaction starts the WAL over. Below the maximum ingest a round
often ends while the writer waits for work, and the WAL starts over before the mark, with no wait. The WAL's mark
and bound are unchanged. The writer checkpoints itself, as SQLite's hook did, only when this thread has not
answered within ``RESTART_WAIT``; a reader's snapshot that keeps frames in the WAL (as it did SQLite's checkpoint)
makes the writer try again a step later.

The checkpoints that must happen at a given point stay with retention, on the write connection (the size bound's,
the vacuum's, the full disk's).
"""

from __future__ import annotations

import asyncio
import contextlib
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
# Rounds the writer's commits ask for between two restarts of the WAL, at most (one a commit, when a batch writes
# more frames than the mark's share): the more, the fewer frames the round the writer waits for at the mark copies,
# and the more often pages every batch changes are copied again (8: the writer waits about half as long as it
# checkpointed, for ~10% more CPU in the main process at the maximum; 2: no more CPU, no shorter wait at the
# maximum; docs/performance.md). Below the maximum ingest a round often ends while the writer waits
# for work, and its next transaction starts the WAL over without waiting at all.
ROUNDS_PER_RESTART = 8
RESTART_WAIT = 1.0  # seconds the writer waits for the round that lets it start the WAL over, before it checkpoints


class WalCheckpointer:
    """A passive checkpoint of the SQLite file at ``path`` every ``interval`` seconds, and when the commits on
    ``writer`` ask for one, as a component.

    Its rounds are counted as the maintenance job ``checkpoint`` (duration, last run, errors); a failure is
    logged (rate-limited) and the next round comes as usual: nothing raises out of its thread."""

    name = "wal-checkpoint"

    def __init__(
        self,
        path: Path,
        metrics: CollectorMetrics,
        *,
        interval: float = INTERVAL,
        writer: apsw.Connection | None = None,
    ) -> None:
        self.path = path
        self.interval = interval
        self._metrics = metrics
        self._connection: apsw.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._writer = writer
        # Given the writer, its commits ask for the rounds: one pass each (a round the writer may wait behind).
        self._passes = CATCH_UP_PASSES if writer is None else 1
        # The mark of the writer's automatic checkpoint: where the WAL starts over now, and SQLite's again after stop.
        self.restart_frames = 0 if writer is None else int(writer.pragma("wal_autocheckpoint"))
        self.step = max(1, self.restart_frames // ROUNDS_PER_RESTART)  # frames between two rounds the commits ask for
        self.writer_checkpoints = 0  # how often the writer checkpointed itself (this thread did not answer)
        self._next_round = self.step
        self._next_restart = self.restart_frames
        self._frames = 0  # the WAL's frames at the writer's last commit
        self._rounds = threading.Condition()
        self._asked = False  # the writer asks for a round
        self._started = 0  # rounds begun
        self._finished = 0  # rounds ended

    async def start(self) -> None:
        try:
            # Not read-only, as the readers' are: a checkpoint writes the database file (it never writes a transaction).
            self._connection = open_connection(self.path)
        except apsw.Error as error:
            raise StartupError(f"cannot open the database {self.path} for its WAL checkpoints: {error}") from None
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()
        if self._writer is not None:  # before the writer's thread starts: the service starts this component first
            self._writer.setwalhook(self.committed)

    async def stop(self, deadline: Deadline) -> None:
        self._stopping.set()
        with self._rounds:
            self._rounds.notify_all()
        if self._writer is not None and self._thread is not None:  # the writer's thread has stopped: SQLite's again
            self._writer.pragma("wal_autocheckpoint", self.restart_frames)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, deadline.remaining())
            if thread.is_alive():  # a checkpoint past the deadline: the process exits without it
                return
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _run(self) -> None:
        rounds = self._rounds
        while True:
            with rounds:
                rounds.wait_for(lambda: self._asked or self._stopping.is_set(), self.interval)
                if self._stopping.is_set():
                    return
                self._asked = False
                self._started += 1
            self.checkpoint()
            with rounds:
                self._finished = self._started
                rounds.notify_all()

    def committed(self, connection: apsw.Connection, name: str, frames: int) -> int:
        """The write connection's WAL hook, on the writer's thread after each commit (no lock held):
        ``frames`` is how many the WAL holds."""
        if frames < self._frames:  # the WAL was started over
            self._next_round, self._next_restart = self.step, self.restart_frames
        committed, self._frames = frames - min(frames, self._frames), frames
        if self._stopping.is_set():
            if frames >= self.restart_frames:
                self._checkpoint_on_writer(connection)
        elif frames >= self._next_restart:
            # another try a step later, should a reader's snapshot keep this one from starting the WAL over
            self._next_restart = self._next_round = frames + self.step
            if not self._round_after(wait=RESTART_WAIT):
                self._checkpoint_on_writer(connection)
        elif frames >= self._next_round:
            self._next_round = (frames // self.step + 1) * self.step
            if frames + committed < self._next_restart:  # else the restart's round would wait behind this one
                self._round_after(wait=0)
        return apsw.SQLITE_OK

    def _round_after(self, *, wait: float) -> bool:
        """Ask for a round that begins after now, waiting up to ``wait`` seconds for it: whether it ended."""
        with self._rounds:
            wanted = self._started + 1
            self._asked = True
            self._rounds.notify_all()
            return wait > 0 and self._rounds.wait_for(lambda: self._finished >= wanted or self._stopping.is_set(), wait)

    def _checkpoint_on_writer(self, connection: apsw.Connection) -> None:
        self.writer_checkpoints += 1
        checkpoint_as_sqlite(connection)

    def checkpoint(self) -> tuple[int, int] | None:
        """One round of passive checkpoints (``CATCH_UP_PASSES`` at most, one given the writer): the WAL's frames
        and how many of them are in the database file after the last pass, or None when none ran (another checkpoint
        was running, the disk is full: retention's business, or it failed)."""
        connection = self._connection
        if connection is None:
            return None
        metrics = self._metrics
        started = time.perf_counter()
        frames: tuple[int, int] | None = None
        try:
            for _ in range(self._passes):
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


def checkpoint_as_sqlite(connection: apsw.Connection) -> None:
    """What SQLite's own WAL hook does at ``wal_autocheckpoint``: a passive checkpoint; when another checkpoint runs
    (busy) or the disk is full, the next commit past the mark tries again."""
    with contextlib.suppress(apsw.BusyError, apsw.FullError):
        connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
