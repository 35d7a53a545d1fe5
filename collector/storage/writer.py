"""The span writer: owns the one write connection and turns batches of spans into committed rows.

Only the pipeline's writer thread calls it (SQLite connections are not to be shared between threads here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from collector.model import Span
from collector.storage.connection import open_connection
from collector.storage.schema import migrate

_to_json = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))

_SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "flags",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ns",
    "status_code",
    "status_message",
    "service_name",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "events",
    "links",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "received_at_unix_nano",
)

# A span sent twice (a client retrying after a timeout) is stored once: the first copy stays.
INSERT_SPAN = (
    f"INSERT INTO spans ({', '.join(_SPAN_COLUMNS)}) VALUES ({', '.join('?' * len(_SPAN_COLUMNS))})"
    " ON CONFLICT (trace_id, span_id) DO NOTHING"
)


def span_rows(spans: Sequence[Span], received_at: int) -> list[tuple[Any, ...]]:
    """Rows for ``INSERT_SPAN``; resource attributes shared by many spans are encoded once."""
    resource_json: dict[int, str] = {}
    rows = []
    for span in spans:
        resource = span.resource_attributes
        encoded_resource = resource_json.get(id(resource))
        if encoded_resource is None:
            encoded_resource = resource_json[id(resource)] = _to_json(resource)
        rows.append(
            (
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.trace_state,
                span.flags,
                span.name,
                span.kind,
                span.start_time_unix_nano,
                span.end_time_unix_nano,
                span.end_time_unix_nano - span.start_time_unix_nano,
                span.status_code,
                span.status_message,
                span.service_name,
                span.scope_name,
                span.scope_version,
                encoded_resource,
                _to_json(span.attributes),
                _to_json(span.events),
                _to_json(span.links),
                span.dropped_attributes_count,
                span.dropped_events_count,
                span.dropped_links_count,
                received_at,
            )
        )
    return rows


class SpanWriter:
    """Commits batches of spans; one transaction per batch."""

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self.path = path
        self.connection = open_connection(path, synchronous=synchronous)
        migrate(self.connection)

    def write(self, spans: Sequence[Span]) -> int:
        """Insert and commit; returns how many spans were new (duplicates are ignored)."""
        rows = span_rows(spans, time.time_ns())
        before = self.connection.total_changes()
        with self.connection:
            self.connection.executemany(INSERT_SPAN, rows)
        return self.connection.total_changes() - before

    def close(self) -> None:
        self.connection.close()
