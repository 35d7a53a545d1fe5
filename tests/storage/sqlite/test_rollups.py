"""SQLite's rollup statement against its schema (the rollups' behavior: tests/storage/contract/test_rollups.py)."""

from __future__ import annotations

from pathlib import Path

from collector.storage.sqlite.writer import SpanWriter


def test_the_rollup_writes_every_column_of_traces(tmp_path: Path) -> None:
    """The rollup's columns are built from the records; the traces table of the SQL contract must not move."""
    from collector.storage.sqlite.rollups import ROLLUP_COLUMNS

    connection = SpanWriter(tmp_path / "spans.db").connection
    schema = [row[1] for row in connection.execute("PRAGMA table_info(traces)")]
    assert sorted(["trace_id", *(name for name, _ in ROLLUP_COLUMNS)]) == sorted(schema)
