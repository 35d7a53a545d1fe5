"""The routine WAL checkpoint on its own connection and thread: the WAL's pages reach the database file while
the writer does nothing (no retention step, no batch); given the write connection, it takes the writer's automatic
checkpoint over (the writer's thread writes only the WAL, and the WAL still starts over); a failure is counted and
the next round still comes, and stopping is clean."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
from prometheus_client import CollectorRegistry, generate_latest

from collector.component import Deadline
from collector.observability.metrics import CollectorMetrics
from collector.storage.sqlite.checkpoint import WalCheckpointer
from collector.storage.sqlite.connection import bound_wal
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import metric_value, otlp_request, wait_until
from tests.storage.sqlite.test_retention import spans_of


async def _stop(checkpointer: WalCheckpointer) -> None:
    await checkpointer.stop(Deadline.after(10))


def _value(registry: CollectorRegistry, name: str) -> float:
    return metric_value(generate_latest(registry).decode(), name, job_name="checkpoint")


def test_the_wal_reaches_the_database_file_while_the_writer_does_nothing_else(tmp_path: Path) -> None:
    db = tmp_path / "idle.db"
    writer = SpanWriter(db)
    writer.write([spans_of(otlp_request(50)) for _ in range(8)])
    page_size = writer.connection.pragma("page_size")
    pages = writer.connection.pragma("page_count")
    # 400 spans are well under the automatic checkpoint's half of the WAL's bound: their pages are in the WAL only
    assert os.stat(db).st_size < pages * page_size
    registry = CollectorRegistry()
    checkpointer = WalCheckpointer(db, CollectorMetrics(registry), interval=0.01)
    asyncio.run(checkpointer.start())
    try:
        # a checkpoint that copied every frame sets the file to the database's size
        wait_until(lambda: os.stat(db).st_size == pages * page_size, 30, "the WAL's pages in the database file")
        assert writer.connection.pragma("page_count") == pages  # nothing was written meanwhile
    finally:
        asyncio.run(_stop(checkpointer))
    assert _value(registry, "genai_collector_maintenance_last_run_timestamp_seconds") > 0
    assert _value(registry, "genai_collector_maintenance_errors_total") == 0

    # the writer starts the WAL over at its next batch: its frames are those of that batch alone
    frames_before = os.stat(f"{db}-wal").st_size
    writer.write([spans_of(otlp_request(2))])
    assert os.stat(f"{db}-wal").st_size == frames_before  # reused, not grown
    writer.close()


class _ObservedFile(apsw.VFSFile):  # type: ignore[misc]
    def __init__(self, writes: list[tuple[str, str, int]], name: Any, flags: list[int]) -> None:
        self.file = os.path.basename(name.filename() if hasattr(name, "filename") else str(name))
        self.writes = writes
        super().__init__("unix", name, flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        self.writes.append((self.file, threading.current_thread().name, offset))
        super().xWrite(data, offset)


class _ObservedVfs(apsw.VFS):  # type: ignore[misc]
    """SQLite's own unix files, each write recorded: (file name, thread, offset)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, int]] = []
        super().__init__("observed-writes", "unix", makedefault=True)

    def xOpen(self, name: Any, flags: list[int]) -> _ObservedFile:
        return _ObservedFile(self.writes, name, flags)


@contextlib.contextmanager
def _observed_writes() -> Iterator[list[tuple[str, str, int]]]:
    """Every connection opened inside uses a VFS that records which thread writes where."""
    vfs = _ObservedVfs()
    try:
        yield vfs.writes
    finally:
        vfs.unregister()  # the default is unix again


def test_given_the_writer_it_takes_its_automatic_checkpoint_over_and_the_wal_still_starts_over(
    tmp_path: Path,
) -> None:
    db = tmp_path / "busy.db"
    with _observed_writes() as writes:
        writer = SpanWriter(db)
        mark = bound_wal(writer.connection, 1024 * 1024) // 2  # the automatic checkpoint at 128 frames
        checkpointer = WalCheckpointer(db, CollectorMetrics(CollectorRegistry()), writer=writer.connection)
        asyncio.run(checkpointer.start())
        try:
            batches = [[spans_of(otlp_request(50)) for _ in range(4)] for _ in range(30)]
            del writes[:]
            for batch in batches:  # back to back, ~100 frames each: the WAL passes the mark again and again
                writer.write(batch)
            written = list(writes)  # not the checkpoint of the writer's close
        finally:
            asyncio.run(_stop(checkpointer))
        # SQLite's automatic checkpoint is the writer's again once the checkpointer has stopped
        assert writer.connection.pragma("wal_autocheckpoint") == mark
        frame_bytes = 24 + writer.connection.pragma("page_size")
        writer.close()
    # the writer's thread wrote the WAL only: every page reached the database file from the checkpointer's
    assert {thread for file, thread, _ in written if file == db.name} == {"wal-checkpoint"}
    assert {thread for file, thread, _ in written if file == f"{db.name}-wal"} == {threading.current_thread().name}
    # and the WAL started over (its header rewritten) many times, never holding much more than the mark
    wal_offsets = [offset for file, _, offset in written if file == f"{db.name}-wal"]
    assert wal_offsets.count(0) >= 5
    assert max(wal_offsets) // frame_bytes < mark + 200  # its last frame: the mark and a batch
    assert checkpointer.writer_checkpoints == 0


def test_a_failing_round_is_counted_and_the_next_one_still_comes(tmp_path: Path) -> None:
    db = tmp_path / "failing.db"
    SpanWriter(db).close()
    registry = CollectorRegistry()
    checkpointer = WalCheckpointer(db, CollectorMetrics(registry), interval=0.01)
    asyncio.run(checkpointer.start())
    try:
        assert checkpointer._connection is not None
        checkpointer._connection.close()  # every checkpoint on it fails from now on
        wait_until(lambda: _value(registry, "genai_collector_maintenance_errors_total") >= 3, 30, "three failed rounds")
    finally:
        asyncio.run(_stop(checkpointer))
    assert checkpointer._thread is None and checkpointer._connection is None


def test_stop_without_start_is_harmless_and_a_second_stop_does_nothing(tmp_path: Path) -> None:
    checkpointer = WalCheckpointer(tmp_path / "never.db", CollectorMetrics(CollectorRegistry()))
    asyncio.run(_stop(checkpointer))
    asyncio.run(_stop(checkpointer))
    assert not (tmp_path / "never.db").exists()
