"""The schema on PostgreSQL: SQLite's tables, columns, views and indexes by name; migrations recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.storage.postgres.connection import connect
from collector.storage.postgres.schema import SCHEMA_VERSION, migrate
from collector.storage.sqlite.connection import open_connection
from collector.storage.sqlite.schema import migrate as migrate_sqlite
from tests.postgres import Cluster

# SQLite's latency histograms are how it answers percentiles without sorting a day of durations; PostgreSQL
# computes them exactly (docs/postgresql.md).
SQLITE_ONLY = {"latency_series", "latency_histograms", "latency_clock", "latency_pending"}


def sqlite_schema(tmp_path: Path) -> tuple[dict[str, list[str]], set[str]]:
    connection = open_connection(tmp_path / "schema.db")
    migrate_sqlite(connection)
    relations = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
        )
        if name not in SQLITE_ONLY
    ]
    columns = {name: [row[1] for row in connection.execute(f"PRAGMA table_info({name})")] for name in relations}
    indexes = {
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'"
        )
    }
    connection.close()
    return columns, indexes


def test_the_tables_columns_views_and_indexes_are_sqlites(postgres_dsn: str, tmp_path: Path) -> None:
    """Same names, so the SQL contract users read (README, docs) is the same; the column order may differ
    (SQLite's migrations appended columns), and PostgreSQL adds its migrations table."""
    expected_columns, expected_indexes = sqlite_schema(tmp_path)
    with connect(postgres_dsn) as connection:
        migrate(connection)
        columns: dict[str, list[str]] = {}
        for table, column in connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name <> 'schema_migrations'"
            " AND table_name NOT IN (SELECT relname FROM pg_class WHERE relispartition)"  # the days of spans
            " ORDER BY table_name, ordinal_position"
        ):
            columns.setdefault(table, []).append(column)
        indexes = {
            name
            for (name,) in connection.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                " AND tablename IN ('spans', 'traces', 'metric_snapshots', 'events', 'evaluations', 'resources')"
                " AND indexname NOT LIKE '%%\\_pkey' AND indexname NOT LIKE '%%\\_key'"
            )
        }
    assert {table: sorted(names) for table, names in columns.items()} == {
        table: sorted(names) for table, names in expected_columns.items()
    }
    assert indexes == expected_indexes


def test_migrations_are_recorded_and_a_newer_database_is_refused(postgres_cluster: Cluster) -> None:
    with postgres_cluster.database() as dsn, connect(dsn) as connection:
        assert migrate(connection) == 0
        assert migrate(connection) == SCHEMA_VERSION
        assert connection.execute("SELECT version FROM schema_migrations").fetchall() == [(SCHEMA_VERSION,)]
        connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
        with pytest.raises(RuntimeError, match="newer than this genai-collector understands"):
            migrate(connection)


def test_a_span_is_keyed_by_its_ids_and_start_time(postgres_dsn: str) -> None:
    """Partitioned by day of start time, the primary key holds the start time (a retry sends the same)."""
    with connect(postgres_dsn) as connection:
        migrate(connection)
        key = connection.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'spans'::regclass AND contype = 'p'"
        ).fetchone()
    assert key == ("PRIMARY KEY (trace_id, span_id, start_time_unix_nano)",)
