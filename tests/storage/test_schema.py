"""Migrations on user_version: applied once, in order, and a newer database is refused."""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import pytest

from collector.storage.connection import open_connection
from collector.storage.schema import GENAI_COLUMNS, SCHEMA_VERSION, migrate


def columns(connection: apsw.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def test_fresh_database_gets_every_table_in_wal_mode(tmp_path: Path) -> None:
    connection = open_connection(tmp_path / "fresh.db")
    assert migrate(connection) == 0
    assert connection.pragma("user_version") == SCHEMA_VERSION
    assert connection.pragma("journal_mode") == "wal"
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"spans", "traces", "metric_snapshots"} <= tables
    span_columns = columns(connection, "spans")
    for name, _ in GENAI_COLUMNS:
        assert name in span_columns
    for name in ("threshold", "breached", "trace_id", "metric", "value", "computed_at"):
        assert name in columns(connection, "metric_snapshots")


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    migrate(open_connection(path))
    connection = open_connection(path)
    assert migrate(connection) == SCHEMA_VERSION
    assert connection.pragma("user_version") == SCHEMA_VERSION


def test_connections_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """A daemon and in-process exporters may create the same file at the same moment."""
    for attempt in range(5):
        path = tmp_path / f"shared-{attempt}.db"
        start = threading.Barrier(6)
        versions: list[int] = []
        errors: list[BaseException] = []

        def open_and_migrate() -> None:
            start.wait()
            try:
                connection = open_connection(path)
                migrate(connection)
                versions.append(connection.pragma("user_version"))
                connection.close()
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=open_and_migrate) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == [] and versions == [SCHEMA_VERSION] * 6


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    connection = open_connection(tmp_path / "newer.db")
    connection.pragma("user_version", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="newer than this genai-collector understands"):
        migrate(connection)
