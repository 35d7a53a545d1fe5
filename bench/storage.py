"""What the bench measures of storage: bytes per stored span, ingest with retention deleting, and the
amplification of a request whose resource is large. Imported by ``bench/ingest.py`` as ``bench.storage``.

Works against any version of the collector (the bytes per span of one before ``resources`` existed
are what they are), so that the same script measures before and after a storage change.
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import apsw
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

MIB = 1024 * 1024
DELETED_SPANS = "genai_collector_retention_deleted_spans_total"


def database_bytes(db: Path) -> int:
    """The database files on disk (main, WAL); after a clean stop the WAL is gone."""
    return sum(os.stat(f"{db}{suffix}").st_size for suffix in ("", "-wal") if os.path.exists(f"{db}{suffix}"))


def storage_figures(db: Path) -> dict[str, Any]:
    """Bytes per stored span: of the files, and of the pages in use (the files less their free pages)."""
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        spans = connection.execute("SELECT count(*) FROM spans").fetchone()[0]
        page_size = connection.pragma("page_size")
        used = (connection.pragma("page_count") - connection.pragma("freelist_count")) * page_size
    finally:
        connection.close()
    files = database_bytes(db)
    return {
        "spans": spans,
        "database_bytes": files,
        "bytes_per_span": round(files / spans, 1) if spans else None,
        "used_bytes_per_span": round(used / spans, 1) if spans else None,
    }


def scrape(admin_port: int, metric: str) -> float:
    """The sum of one metric's samples on the collector's /metrics (0 when absent)."""
    connection = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric) and not line.startswith("#")
    )


def settled_deletions(admin_port: int, quiet: float = 2.0, timeout: float = 30.0) -> int:
    """Spans retention deleted, read once it has stopped deleting (the load is over: the database
    goes back under the low-water mark and stays there)."""
    deadline = time.monotonic() + timeout
    last, since = scrape(admin_port, DELETED_SPANS), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = scrape(admin_port, DELETED_SPANS)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return int(last)


def retention_size(baseline_bytes: int, given: int | None) -> int:
    """The max_size of the run with retention: a third of what the same run stored without it (at least
    16 MiB), so that retention deletes during most of the measured window."""
    return given or max(16 * MIB, baseline_bytes // 3)


def large_resource_request(resource_bytes: int, spans: int) -> bytes:
    """One OTLP/protobuf request: a resource of ``resource_bytes`` of attributes (values of 60,000
    characters, within the default limits) shared by ``spans`` small spans of one trace."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attributes = resource_spans.resource.attributes
    attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="large-resource")))
    for index in range(max(1, resource_bytes // 60_000)):
        attributes.append(KeyValue(key=f"bench.blob.{index}", value=AnyValue(string_value=f"{index:x}" * 60_000)))
    scope_spans = resource_spans.scope_spans.add()
    trace_id = os.urandom(16)
    now = time.time_ns()
    for index in range(spans):
        span = scope_spans.spans.add()
        span.trace_id, span.span_id = trace_id, os.urandom(8)
        span.name, span.kind = f"step {index}", 1
        span.start_time_unix_nano, span.end_time_unix_nano = now, now + 1_000_000
    return request.SerializeToString()


def send_large_resources(http_target: str, resource_bytes: int, spans: int, requests: int) -> int:
    """Send ``requests`` such requests (fresh trace ids each); the bytes sent."""
    url = urlsplit(http_target)
    sent = 0
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        for _ in range(requests):
            body = large_resource_request(resource_bytes, spans)
            connection.request("POST", url.path, body=body, headers={"Content-Type": "application/x-protobuf"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"bench: a large-resource request was answered {response.status}")
            sent += len(body)
    finally:
        connection.close()
    return sent


def amplification(db: Path, sent_bytes: int, stored_before: int) -> dict[str, Any]:
    grown = database_bytes(db) - stored_before
    return {
        "request_bytes": sent_bytes,
        "database_growth_bytes": grown,
        "amplification": round(grown / sent_bytes, 2) if sent_bytes else None,
    }
