"""Migrations on user_version: applied once, in order, and a newer database is refused."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import apsw
import pytest

from collector.storage.schema import GENAI_COLUMNS
from collector.storage.sqlite.connection import open_connection
from collector.storage.sqlite.schema import MIGRATIONS, SCHEMA_VERSION, migrate


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


def _open_and_migrate(path: Path, start: threading.Barrier, versions: list[int], errors: list[BaseException]) -> None:
    start.wait()
    try:
        connection = open_connection(path)
        migrate(connection)
        versions.append(connection.pragma("user_version"))
        connection.close()
    except BaseException as error:  # reported by the test
        errors.append(error)


def test_connections_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """A daemon and in-process exporters may create the same file at the same moment."""
    for attempt in range(5):
        path = tmp_path / f"shared-{attempt}.db"
        start = threading.Barrier(6)
        versions: list[int] = []
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_open_and_migrate, args=(path, start, versions, errors)) for _ in range(6)]
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


def _at_version_3(path: Path) -> apsw.Connection:
    """A database as genai-collector made it before resources had their own table: migrations 1-3."""
    connection = apsw.Connection(str(path))
    connection.pragma("journal_mode", "wal")
    for version in (1, 2, 3):
        with connection:
            connection.execute(MIGRATIONS[version - 1])
            connection.pragma("user_version", version)
    return connection


def test_a_version_3_database_keeps_every_row_and_every_resource_through_the_views(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = _at_version_3(path)
    big = {"service.name": "billing", "host.name": "h" * 5000, "k8s.pod.uid": "uid-1", "deployment.environment": "prod"}
    resources = [
        json.dumps(big, separators=(",", ":")),
        '{"service.name":"chat","telemetry.sdk.language":"python"}',
        "{}",
    ]
    scopes = [("openinference.instrumentation.openai", "0.1.2"), ("manual", None), (None, None)]
    expected_spans = {}
    with old:
        for index in range(300):  # every resource with every scope, many spans each
            resource, (scope_name, scope_version) = resources[index % 3], scopes[index % 7 % 3]
            trace_id, span_id = f"{index // 5:032x}", f"{index:016x}"
            old.execute(
                "INSERT INTO spans (trace_id, span_id, name, kind, start_time_unix_nano, end_time_unix_nano,"
                " duration_ns, status_code, service_name, scope_name, scope_version, resource_attributes, attributes,"
                " events, links, received_at_unix_nano, request_model, input_tokens)"
                " VALUES (?, ?, ?, 'client', ?, ?, 5, 'unset', ?, ?, ?, ?, '{\"a\":1}', '[]', '[]', ?, 'gpt-4o', ?)",
                (
                    trace_id,
                    span_id,
                    f"span {index}",
                    index,
                    index + 5,
                    json.loads(resource).get("service.name"),
                    scope_name,
                    scope_version,
                    resource,
                    10_000 + index,
                    index,
                ),
            )
            expected_spans[(trace_id, span_id)] = (resource, scope_name, scope_version, f"span {index}", index)
        expected_events = {}
        for index in range(40):
            resource, scope_name = resources[index % 3], scopes[index % 2][0]
            old.execute(
                "INSERT INTO events (trace_id, span_id, time_unix_nano, name, source, body, attributes, service_name,"
                " scope_name, resource_attributes, received_at_unix_nano, dedup_key)"
                " VALUES (?, ?, ?, 'gen_ai.user.message', 'log', '\"hi\"', '{}', 'billing', ?, ?, ?, ?)",
                (f"{index:032x}", f"{index:016x}", index, scope_name, resource, 20_000 + index, f"key-{index}"),
            )
            expected_events[f"key-{index}"] = (resource, scope_name)
        old.execute(
            "INSERT INTO evaluations (trace_id, span_id, name, score, source, time_unix_nano, received_at_unix_nano,"
            " dedup_key)"
            " VALUES ('00', '01', 'faithfulness', 0.9, 'log', 1, 2, 'e')"
        )
        old.execute("INSERT INTO traces (trace_id, span_count, last_span_at_unix_nano) VALUES ('00', 1, 5)")
    old.close()

    connection = open_connection(path)
    assert migrate(connection) == 3
    assert connection.pragma("user_version") == SCHEMA_VERSION
    assert "resource_attributes" not in columns(connection, "spans")
    assert "service_name" in columns(connection, "spans")
    spans = {
        (row[0], row[1]): row[2:]
        for row in connection.execute(
            "SELECT trace_id, span_id, resource_attributes, scope_name, scope_version, name, input_tokens"
            " FROM spans_with_resource"
        )
    }
    assert spans == expected_spans
    events = {
        row[0]: row[1:]
        for row in connection.execute("SELECT dedup_key, resource_attributes, scope_name FROM events_with_resource")
    }
    assert events == expected_events
    # each (resource, scope) stored once, however many rows point to it
    distinct = {value[:3] for value in expected_spans.values()} | {(*value, None) for value in expected_events.values()}
    assert connection.execute("SELECT count(*) FROM resources").fetchall() == [(len(distinct),)]
    assert connection.execute("SELECT count(*), min(resource_id) IS NULL FROM evaluations").fetchall() == [(1, 1)]
    assert connection.execute("SELECT count(*) FROM traces").fetchall() == [(1,)]
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_new_database_hands_freed_pages_back(tmp_path: Path) -> None:
    connection = open_connection(tmp_path / "fresh.db")
    migrate(connection)
    assert connection.pragma("auto_vacuum") == 2  # incremental


def test_the_model_call_condition_is_written_as_the_partial_index_is() -> None:
    """SQLite uses the partial index spans_genai_calls only for a condition written exactly as its own."""
    from collector.storage.sql import GENAI_CALLS

    assert f"WHERE {GENAI_CALLS};" in MIGRATIONS[5]
