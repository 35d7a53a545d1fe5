"""The span writer: one transaction per batch, JSON columns, duplicates stored once."""

from __future__ import annotations

import json
from pathlib import Path

from collector.decode import decode_spans
from collector.model import Records
from collector.storage.writer import SpanWriter
from tests.helpers import otlp_request


def test_batch_is_committed_and_readable_from_another_connection(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "spans.db")
    spans, _ = decode_spans(otlp_request(3, service="billing", attributes={"gen_ai.request.model": "gpt-4o"}))
    assert writer.write([Records(spans=spans)]) == 3
    reader = SpanWriter(tmp_path / "spans.db").connection
    rows = list(reader.execute("SELECT service_name, attributes, resource_attributes, duration_ns FROM spans"))
    assert len(rows) == 3
    service, attributes, resource, duration = rows[0]
    assert service == "billing"
    assert json.loads(attributes) == {"gen_ai.request.model": "gpt-4o"}
    assert json.loads(resource) == {"service.name": "billing"}
    assert duration == 1_000_000


def test_a_span_written_twice_is_stored_once(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "spans.db")
    spans, _ = decode_spans(otlp_request(4))
    assert writer.write([Records(spans=spans)]) == 4
    assert writer.write([Records(spans=spans[1:]), Records(spans=spans[:1])]) == 0
    assert list(writer.connection.execute("SELECT count(*) FROM spans")) == [(4,)]
