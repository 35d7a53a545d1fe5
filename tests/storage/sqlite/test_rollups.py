"""SQLite's rollup statement against its schema (the rollups' behavior: tests/storage/contract/test_rollups.py)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from collector.config import Settings
from collector.genai.calls import MAX_DEPTH
from collector.genai.transform import Transform
from collector.model import Span
from collector.otlp import decode_spans
from collector.storage.sqlite.dialect import SQLITE
from collector.storage.sqlite.rollups import CANDIDATE_TRACES, candidates_among
from collector.storage.sqlite.rows import span_rows
from collector.storage.sqlite.writer import ResourceIds, SpanWriter, insert_rows
from tests.helpers import trace_request


def test_the_rollup_writes_every_column_of_traces(tmp_path: Path) -> None:
    """The rollup's columns are built from the records; the traces table of the SQL contract must not move."""
    from collector.storage.sqlite.rollups import ROLLUP_COLUMNS

    connection = SpanWriter(tmp_path / "spans.db").connection
    schema = [row[1] for row in connection.execute("PRAGMA table_info(traces)")]
    assert sorted(["trace_id", *(name for name, _ in ROLLUP_COLUMNS)]) == sorted(schema)


def random_traces(rng: random.Random, count: int) -> list[Span]:
    """Traces of random shapes for the repeated-call rule: model calls (LLM and embedding) nested in each other
    directly or through spans that are not GenAI (category ``other``, or none when not normalized), agents
    between them, response ids shared, parents missing, parent cycles; and two chains of ``other`` spans between
    two LLM spans, one as deep as the rule looks and one a span deeper."""
    transform = Transform(Settings())
    operations = [None, "chat", "embeddings", "invoke_agent", "execute_tool", None]
    spans: list[Span] = []
    for _ in range(count):
        ids = [rng.randbytes(8) for _ in range(rng.randint(1, 12))]
        described = []
        for index, span_id in enumerate(ids):
            parent = rng.choice([None, rng.randbytes(8), *ids[:index], *ids[:index], *ids])
            attributes: dict[str, Any] = {}
            operation = rng.choice(operations)
            if operation is not None:
                attributes["gen_ai.operation.name"] = operation
            if rng.random() < 0.3:
                attributes["gen_ai.response.id"] = rng.choice(["r1", "r2"])
            described.append({"span_id": span_id, "parent": parent or b"", "attributes": attributes})
        decoded, _ = decode_spans(trace_request(rng.randbytes(16), described))
        normalized = transform.spans(decoded)[0].spans
        spans += [span._replace(genai=None) if rng.random() < 0.2 else span for span in normalized]
    for others in (MAX_DEPTH, MAX_DEPTH + 1):
        ids = [rng.randbytes(8) for _ in range(others + 2)]
        chat = {"gen_ai.operation.name": "chat"}
        described = [{"span_id": ids[0], "attributes": chat}]
        described += [{"span_id": span_id, "parent": ids[index]} for index, span_id in enumerate(ids[1:-1])]
        described.append({"span_id": ids[-1], "parent": ids[-2], "attributes": chat})
        spans += transform.spans(decode_spans(trace_request(rng.randbytes(16), described))[0])[0].spans
    return spans


def test_the_candidates_found_in_a_batchs_rows_are_those_the_query_finds(tmp_path: Path) -> None:
    """``candidates_among`` (the traces a batch of new traces may hold a repeated call in, found in its rows) is
    ``CANDIDATE_TRACES`` over the same spans stored, trace for trace, whatever the shapes."""
    rng = random.Random(18)
    writer = SpanWriter(tmp_path / "candidates.db")
    for round_ in range(5):
        spans = random_traces(rng, 300)
        requests = [span_rows(spans[start : start + 100]) for start in range(0, len(spans), 100)]
        expected = set()
        with writer.connection:
            insert_rows(writer.connection, requests, round_, ResourceIds(writer.connection))
            traces = SQLITE.list_value(sorted({span.trace_id for span in spans}))
            params = {"traces": traces, "max_depth": MAX_DEPTH}
            expected = {row[0] for row in writer.connection.execute(CANDIDATE_TRACES, params)}
        found = candidates_among(requests)
        assert found == expected
        assert 30 < len(found) < 270  # both kinds in numbers
        assert spans[-MAX_DEPTH - 4].trace_id in found and spans[-1].trace_id not in found  # as deep as the rule looks
    writer.close()
