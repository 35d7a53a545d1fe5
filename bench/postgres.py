"""PostgreSQL for the benchmarks: a throwaway durable cluster (or a server the user names), a fresh database per
run, the spans stored, the server's CPU, and a large database prefilled through the collector's own writer.

The cluster is the tests' (``tests/postgres.py``: Debian's ``initdb`` and ``pg_ctl``, a unix socket, run as the
``postgres`` OS user under root) with durability on, as a production server runs: ``fsync``, ``synchronous_commit``
and ``full_page_writes``, so that a figure here compares with SQLite's ``synchronous=full``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import ROOT
from bench.traces import TraceBuilder

DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "listen_addresses": "''",
    "max_connections": "100",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
}
PREFILL_NONCE = 0xFFFF << 48  # as bench/prefill.py: prefilled trace ids end in ffff...


def is_url(db: str | Path) -> bool:
    return str(db).startswith(("postgresql://", "postgres://"))


class Server:
    """Where the benchmark's databases are made: a throwaway cluster (``url`` None) or the server of ``url``,
    whose user may create databases. ``database(name)`` is a new empty database's URL, dropped on ``close``
    unless ``keep``."""

    def __init__(self, url: str | None = None, *, keep: bool = False, settings: dict[str, str] | None = None) -> None:
        self.cluster: Any = None
        if url is None:
            sys.path.insert(0, str(ROOT))
            from tests.postgres import Cluster, server_binaries

            binaries = server_binaries()
            if binaries is None:
                raise SystemExit("bench: --postgres without a URL needs Debian's postgresql server binaries")
            self.cluster = Cluster(binaries, {**DURABLE, **(settings or {})}).start()
            url = self.cluster.url()
        elif settings:
            raise SystemExit("bench: --postgres-setting applies to the throwaway cluster, not to a server given by URL")
        self.url = url
        self.keep = keep
        self.created: list[str] = []

    def database(self, prefix: str) -> str:
        name = f"genai_bench_{prefix}_{uuid.uuid4().hex[:8]}".lower().replace("-", "_")
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return with_database(self.url, name)

    def close(self) -> None:
        if not self.keep:
            for name in self.created:
                with contextlib.suppress(psycopg.Error), psycopg.connect(self.url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self.cluster is not None:
            if self.keep:
                print(f"bench: PostgreSQL left running in {self.cluster.root} (pg_ctl stop ends it)", file=sys.stderr)
            else:
                self.cluster.remove()

    def cpu_seconds(self) -> float | None:
        """CPU the server's processes have used (the live ones and those reaped), or None for a server elsewhere."""
        if self.cluster is None:
            return None
        postmaster = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        total = _cpu(postmaster, children=True)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != postmaster:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    if _parent(int(entry.name)) == postmaster:
                        total += _cpu(int(entry.name))
        return total


def server_settings(assignments: list[str]) -> dict[str, str]:
    """``--postgres-setting NAME=VALUE`` (repeatable) as the throwaway cluster's settings, e.g. ``jit=off``."""
    settings = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not (name and equals):
            raise SystemExit(f"bench: --postgres-setting takes NAME=VALUE, not {assignment!r}")
        settings[name.strip()] = value.strip()
    return settings


SETTING_HELP = "a setting of the throwaway PostgreSQL cluster, NAME=VALUE (repeatable), e.g. jit=off"


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def _cpu(pid: int, *, children: bool = False) -> float:
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def count_spans(url: str) -> int:
    """Spans stored (0 before the collector made its schema)."""
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT to_regclass('spans') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return 0
        row = connection.execute("SELECT count(*) FROM spans").fetchone()
    return int(row[0]) if row else 0


def storage_figures(url: str) -> dict[str, Any]:
    """Bytes per stored span: the collector's tables with their indexes and TOAST (retention's measure)."""
    with psycopg.connect(url) as connection:
        spans = count_spans(url)
        row = connection.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    size = int(row[0] or 0) if row else 0
    return {
        "spans": spans,
        "database_bytes": size,
        "bytes_per_span": round(size / spans, 1) if spans else None,
        "used_bytes_per_span": None,
    }


def prefill(url: str, total: int, spans_per_request: int, *, spread_s: float = 24 * 3600) -> dict[str, Any]:
    """``total`` spans written through the collector's own PostgreSQL writer (COPY, rollups, one transaction per
    batch of 2,000), copies of the ingest bench's traces under fresh ids, evenly spread over ``spread_s`` seconds
    ending an hour ago; then their traces are marked settled, as long-past traces are."""
    sys.path.insert(0, str(ROOT))
    from collector.config import load_settings
    from collector.genai.transform import Transform
    from collector.model import Records
    from collector.otlp import decode_spans
    from collector.storage.postgres.writer import PostgresSpanWriter

    started = time.monotonic()
    transform = Transform(load_settings({}))
    builder = TraceBuilder(seed=7, base_time_ns=0)
    by_trace: dict[str, list[Any]] = {}
    for _ in range(64):
        spans, _rejection = decode_spans(builder.request(spans_per_request))
        for span in transform.spans(spans)[0].spans:
            by_trace.setdefault(span.trace_id, []).append(span)
    templates = list(by_trace.values())
    per_trace = sum(map(len, templates)) / len(templates)
    now = time.time_ns()
    newest, oldest = now - 3600 * 10**9, now - 3600 * 10**9 - int(spread_s * 10**9)
    step = (newest - oldest) // max(1, int(total / per_trace))
    print(f"bench: prefilling {total:,} spans into PostgreSQL through the collector's writer", file=sys.stderr)
    writer = PostgresSpanWriter(url)
    written = copies = 0
    last_report = time.monotonic()
    try:
        while written < total:
            batch: list[Any] = []
            while len(batch) < 2_000 and written + len(batch) < total:
                spans = templates[copies % len(templates)]
                trace_id = spans[0].trace_id[:16] + f"{PREFILL_NONCE | copies:016x}"
                shift = oldest + copies * step - min(span.start_time_unix_nano for span in spans)
                batch.extend(
                    span._replace(
                        trace_id=trace_id,
                        start_time_unix_nano=span.start_time_unix_nano + shift,
                        end_time_unix_nano=span.end_time_unix_nano + shift,
                    )
                    for span in spans[: total - written - len(batch)]
                )
                copies += 1
            writer.write([Records(spans=batch)])
            written += len(batch)
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                rate = written / (last_report - started)
                print(f"bench: prefilled {written:,} spans ({rate:,.0f}/s)", file=sys.stderr)
    finally:
        writer.close()
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE traces SET settled_at_unix_nano = last_span_at_unix_nano WHERE settled_at_unix_nano IS NULL"
        )
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    elapsed = time.monotonic() - started
    print(f"bench: prefill done: {written:,} spans, {copies:,} traces in {elapsed:.0f} s", file=sys.stderr)
    return {"spans": written, "traces": copies, "seconds": round(elapsed, 1)}
