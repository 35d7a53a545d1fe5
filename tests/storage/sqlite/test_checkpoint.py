"""The routine WAL checkpoint on its own connection and thread: the WAL's pages reach the database file while
the writer does nothing (no retention step, no batch), a failure is counted and the next round still comes, and
stopping is clean."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from collector.component import Deadline
from collector.observability.metrics import CollectorMetrics
from collector.storage.sqlite.checkpoint import WalCheckpointer
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
