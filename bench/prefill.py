"""A large database made fast: span rows exactly as the collector writes them, copied with fresh ids."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from bench import ROOT
from bench.traces import TraceBuilder

PREFILL_NONCE = 0xFFFF << 48  # prefilled trace ids end in ffff...; a run's nonces never start so
_TEMPLATE_RESOURCES: list[tuple[Any, ...]] = []


def _template_rows(
    spans_per_request: int, requests: int
) -> tuple[list[str], list[tuple[Any, ...]], list[str], list[tuple[Any, ...]]]:
    """Span rows exactly as the collector writes them (decode, normalize, price, redact, ``insert_spans``),
    and the ``traces`` rows its rollup makes of them, read back from a scratch in-memory database."""
    sys.path.insert(0, str(ROOT))
    from collector.config import load_settings
    from collector.genai.transform import Transform
    from collector.otlp import decode_spans
    from collector.storage.sqlite.schema import migrate
    from collector.storage.sqlite.writer import insert_spans

    transform = Transform(load_settings({}))
    builder = TraceBuilder(seed=7, base_time_ns=0)
    scratch = apsw.Connection(":memory:")
    migrate(scratch)
    with scratch:
        for _ in range(requests):
            spans, _rejection = decode_spans(builder.request(spans_per_request))
            records, _stats = transform.spans(spans)
            insert_spans(scratch, records.spans, 30 * 10**9)  # received 30 s after the start
        trace_ids = [row[0] for row in scratch.execute("SELECT DISTINCT trace_id FROM spans")]
        try:
            from collector.storage.sqlite.rollups import roll_up
        except ImportError:
            print("bench: this collector has no trace rollups; the traces table stays empty", file=sys.stderr)
        else:
            roll_up(scratch, trace_ids)
    span_columns = [row[1] for row in scratch.execute("PRAGMA table_info(spans)")]
    spans_rows = scratch.execute(
        f"SELECT {', '.join(span_columns)} FROM spans ORDER BY trace_id, start_time_unix_nano"
    ).fetchall()
    trace_columns = [row[1] for row in scratch.execute("PRAGMA table_info(traces)")]
    trace_rows = scratch.execute(f"SELECT {', '.join(trace_columns)} FROM traces").fetchall()
    if not trace_rows:
        trace_columns = []
    global _TEMPLATE_RESOURCES  # the rows the spans' resource_id point to (schema version 4 on)
    has_resources = scratch.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'resources'").fetchone()[0]
    _TEMPLATE_RESOURCES = scratch.execute("SELECT * FROM resources").fetchall() if has_resources else []
    scratch.close()
    return span_columns, spans_rows, trace_columns, trace_rows


def _copier(columns: list[str]) -> Callable[[tuple[Any, ...], str, int], tuple[Any, ...]]:
    """Copies a row under another trace id with every ``*_unix_nano`` time shifted; a settled time is set."""
    trace_index = columns.index("trace_id")
    times = [i for i, name in enumerate(columns) if name.endswith("_unix_nano")]
    settled = columns.index("settled_at_unix_nano") if "settled_at_unix_nano" in columns else None
    last = columns.index("last_span_at_unix_nano") if "last_span_at_unix_nano" in columns else None

    def copy(row: tuple[Any, ...], trace_id: str, shift: int) -> tuple[Any, ...]:
        values = list(row)
        values[trace_index] = trace_id
        for i in times:
            if values[i] is not None:
                values[i] += shift
        if settled is not None and last is not None:
            values[settled] = values[last]  # old traces have settled long ago
        return tuple(values)

    return copy


def prefill(
    db: Path, total: int, spans_per_request: int, transaction_rows: int, *, spread_s: float = 30 * 86400
) -> dict[str, Any]:
    """Write ``total`` spans and their ``traces`` rows straight into a new database, fast: the collector's
    schema, rows and INSERT, big transactions, no journal while filling; WAL at the end. The traces end an
    hour ago and go back ``spread_s`` seconds, evenly spread."""
    sys.path.insert(0, str(ROOT))
    from collector.storage.sqlite import latency
    from collector.storage.sqlite.schema import migrate

    started = time.monotonic()
    span_columns, span_template, trace_columns, trace_template = _template_rows(spans_per_request, 64)
    row_bytes = sum(len(str(value)) for row in span_template for value in row) / len(span_template)
    needed = int(total * row_bytes * 1.3)
    free = shutil.disk_usage(db.parent).free
    if needed > free * 0.9:
        raise SystemExit(
            f"bench: prefilling {total:,} spans needs about {needed / 2**30:.1f} GiB and {db.parent} has "
            f"{free / 2**30:.1f} GiB free; use a smaller --prefill or another --db-dir"
        )
    print(
        f"bench: prefilling {total:,} spans (~{row_bytes / 1024:.1f} KiB each, ~{needed / 2**30:.1f} GiB) into {db}",
        file=sys.stderr,
    )
    by_trace: dict[str, list[tuple[Any, ...]]] = {}
    for row in span_template:
        by_trace.setdefault(row[span_columns.index("trace_id")], []).append(row)
    rollups = {row[trace_columns.index("trace_id")]: row for row in trace_template}
    templates = list(by_trace.items())
    copy_span, copy_trace = _copier(span_columns), _copier(trace_columns) if trace_columns else None
    insert_span = f"INSERT INTO spans ({', '.join(span_columns)}) VALUES ({', '.join('?' * len(span_columns))})"
    insert_trace = f"INSERT INTO traces ({', '.join(trace_columns)}) VALUES ({', '.join('?' * len(trace_columns))})"
    start_index = span_columns.index("start_time_unix_nano")

    connection = apsw.Connection(str(db))
    migrate(connection)
    with connection:
        for row in _TEMPLATE_RESOURCES:
            connection.execute(f"INSERT INTO resources VALUES ({', '.join('?' * len(row))})", row)
    connection.pragma("journal_mode", "off")
    connection.pragma("synchronous", "off")
    connection.pragma("cache_size", -1_000_000)  # KiB
    now = time.time_ns()
    newest, oldest = now - 3600 * 10**9, now - 3600 * 10**9 - int(spread_s * 10**9)
    step = (newest - oldest) // max(1, math.ceil(total / (len(span_template) / len(templates))))
    written = copies = 0
    sample_ids: list[str] = []
    last_report = time.monotonic()
    while written < total:
        span_batch: list[tuple[Any, ...]] = []
        trace_batch: list[tuple[Any, ...]] = []
        while len(span_batch) < transaction_rows and written + len(span_batch) < total:
            trace_id, rows = templates[copies % len(templates)]
            new_id = trace_id[:16] + f"{PREFILL_NONCE | copies:016x}"
            shift = oldest + copies * step - rows[0][start_index]
            rows = rows[: total - written - len(span_batch)]
            span_batch.extend(copy_span(row, new_id, shift) for row in rows)
            if copy_trace and trace_id in rollups and len(rows) == len(by_trace[trace_id]):
                trace_batch.append(copy_trace(rollups[trace_id], new_id, shift))
            if copies % 997 == 0 and len(sample_ids) < 1000:
                sample_ids.append(new_id)
            copies += 1
        with connection:
            connection.executemany(insert_span, span_batch)
            if trace_batch:
                connection.executemany(insert_trace, trace_batch)
        written += len(span_batch)
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            elapsed = last_report - started
            print(
                f"bench: prefilled {written:,} spans in {elapsed:.0f} s ({written / elapsed:,.0f}/s)", file=sys.stderr
            )
    with connection:  # rows written without the writer: the latency histograms from what they hold
        latency.rebuild(connection)
    connection.pragma("journal_mode", "wal")
    connection.close()
    # Written without syncs, the file is mostly dirty pages: flush them now, or the collector's first
    # fsync would wait for gigabytes of writeback and show up as a stall in the measured run.
    descriptor = os.open(db, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    elapsed = time.monotonic() - started
    print(
        f"bench: prefill done: {written:,} spans, {copies:,} traces in {elapsed:.0f} s "
        f"({written / elapsed:,.0f} spans/s)",
        file=sys.stderr,
    )
    return {
        "spans": written,
        "traces": copies,
        "seconds": round(elapsed, 1),
        "file_gib": round(db.stat().st_size / 2**30, 2),
        "sample_trace_ids": sample_ids,
    }
