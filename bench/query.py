"""Query API benchmark: read latencies over a large database while ingest runs, and ingest with readers.

    .venv/bin/python bench/query.py                       # 1,000,000 spans over 24 h, 10 s per phase
    .venv/bin/python bench/query.py --prefilled-db /var/tmp/query.db --prefill 1000000   # reuse it next time
    .venv/bin/python bench/query.py --smoke               # a few seconds, a small database: it still works

Phases, each on the same collector (``bench/ingest.py``'s load, protocol ``-p``):
1. ``max``: ingest back to back, no reader: the reference throughput.
2. ``max + readers``: the same with ``--readers`` clients querying the API in a loop, ``--reader-pause`` between
   queries (a few dashboard users): is ingest within 15% of phase 1?
3. ``half``: ingest at half the reference rate, no reader: what that rate achieves on its own.
4. ``half + readers``: the same while the readers time each query (the p95 figures): the issue's condition,
   "ingest running at half its maximum", so its ratio to phase 3 is the issue's "within 15%" figure.
5. ``max``, ``max + reading websocket``, ``max + stalled websocket``, ``max`` again, back to back: ingest with a
   live-feed client that reads everything (the feed's own cost), then with one that never reads, each against
   the mean of the two ``max`` runs around them (the same database size and checkpoint state, unlike phase 1).

Queries: the trace list (newest 50), a 1,000-span trace by id, p50/p95/p99 of LLM calls over 24 h by model,
and a Jaeger search (one service, the last hour, 20 traces). Speeds are reported, never asserted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import postgres
from bench.daemon import Daemon
from bench.measure import measure
from bench.prefill import prefill
from bench.report import Run, percentiles_ms
from bench.traces import build_templates

QUERY_PORT = re.compile(r"query (\S+):(\d+)")
HOUR_NS = 3_600 * 10**9
FIGURES = {  # query: the p95 target in ms
    "trace_list": 100,
    "trace_by_id_1000_spans": 100,
    "latency_percentiles_24h": 500,
    "jaeger_search": 200,
}


def big_trace(http_port: int, spans: int = 1_000) -> str:
    """One trace of ``spans`` spans (a root, then a chain ten deep repeated), sent over OTLP/HTTP."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    attribute = resource.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "bench-big-trace"
    scope = resource.scope_spans.add()
    trace_id = os.urandom(16)
    now = time.time_ns() - 120 * 10**9
    ids = [os.urandom(8) for _ in range(spans)]
    for index, span_id in enumerate(ids):
        span = scope.spans.add()
        span.trace_id, span.span_id = trace_id, span_id
        if index:
            span.parent_span_id = ids[0] if index % 10 == 1 else ids[index - 1]
        span.name = "root" if index == 0 else f"step {index}"
        span.start_time_unix_nano = now + index * 1_000_000
        span.end_time_unix_nano = now + index * 1_000_000 + 500_000
    connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    connection.request("POST", "/v1/traces", request.SerializeToString(), {"content-type": "application/x-protobuf"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"bench: the 1,000-span trace was refused: {response.status}")
    return trace_id.hex()


class Readers:
    """``count`` threads, each with a keep-alive connection, cycling through the queries and timing them."""

    def __init__(self, port: int, count: int, big_trace_id: str, service: str, pause: float) -> None:
        self.port = port
        self.count = count
        self.pause = pause
        self.timings: dict[str, list[float]] = {name: [] for name in FIGURES}
        self.errors: dict[str, int] = {}
        self._big_trace_id = big_trace_id
        self._service = service

    def _paths(self) -> dict[str, str]:
        now = time.time_ns()
        return {
            "trace_list": "/api/v1/traces?limit=50",
            "trace_by_id_1000_spans": f"/api/v1/traces/{self._big_trace_id}",
            "latency_percentiles_24h": "/api/v1/stats/latency?"
            + urlencode({"of": "llm", "group_by": "model", "bucket": "1h", "start": now - 24 * HOUR_NS, "end": now}),
            "jaeger_search": "/api/traces?" + urlencode({"service": self._service, "lookback": "1h", "limit": 20}),
        }

    def _loop(self, stop_at: float, offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        names = list(FIGURES)
        index = offset
        while time.monotonic() < stop_at:
            name = names[index % len(names)]
            index += 1
            started = time.perf_counter()
            try:
                connection.request("GET", self._paths()[name])
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                ok = False
            if ok:
                self.timings[name].append(time.perf_counter() - started)
            else:
                self.errors[name] = self.errors.get(name, 0) + 1
            time.sleep(self.pause)
        connection.close()

    def run_until(self, stop_at: float) -> None:
        threads = [threading.Thread(target=self._loop, args=(stop_at, i), daemon=True) for i in range(self.count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def summary(self) -> dict[str, Any]:
        return {
            name: {
                **percentiles_ms(sorted(values)),
                "count": len(values),
                "errors": self.errors.get(name, 0),
                "target_p95_ms": FIGURES[name],
            }
            for name, values in self.timings.items()
        }


def live_websocket(port: int, *, stalled: bool) -> socket.socket:
    """A live-feed client: one that completes the handshake and never reads, or one that reads everything."""
    sock = socket.create_connection(("127.0.0.1", port))
    if stalled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


class ReadingWebsocket:
    """A live-feed client that reads (and discards) everything the feed sends, counting the bytes."""

    def __init__(self, port: int) -> None:
        self.sock = live_websocket(port, stalled=False)
        self.received = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65_536):
                self.received += len(chunk)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefill", type=int, default=1_000_000, help="spans in the database (default 1,000,000)")
    parser.add_argument(
        "--prefilled-db", help="reuse (or create) this database: a SQLite file, or a PostgreSQL URL (filled if empty)"
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="",
        metavar="URL",
        help="prefill and query PostgreSQL: a new database on the server of URL, or without URL on a throwaway "
        "durable cluster (Debian's server binaries)",
    )
    parser.add_argument("--postgres-setting", action="append", default=[], help=postgres.SETTING_HELP)
    parser.add_argument("--db-dir", type=Path, default=None, help="where the temporary database goes")
    parser.add_argument("-p", "--protocol", default="grpc", choices=["grpc", "http-protobuf", "http-json"])
    parser.add_argument("-c", "--clients", type=int, default=8)
    parser.add_argument("-n", "--spans", type=int, default=100, help="spans per request")
    parser.add_argument("--templates", type=int, default=16)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--readers", type=int, default=4, help="concurrent query clients (dashboard users)")
    parser.add_argument("--reader-pause", type=float, default=0.1, help="each reader's pause between queries, s")
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--smoke", action="store_true", help="20,000 spans, 2 s phases: check that it works")
    parser.set_defaults(ca_file=None, api_key=None)  # the load of bench/ingest.py, in plaintext without a key
    args = parser.parse_args(argv)
    if args.smoke:
        args.prefill, args.duration, args.warmup, args.clients, args.templates = 20_000, 2.0, 0.5, 4, 4
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.db_dir or "/tmp")
    server = None
    if args.postgres is not None:
        server = postgres.Server(args.postgres or None, settings=postgres.server_settings(args.postgres_setting))
    db: Path | str
    if server is not None:
        db = server.database("query")
    elif args.prefilled_db and postgres.is_url(args.prefilled_db):
        db = args.prefilled_db
    else:
        db = Path(args.prefilled_db) if args.prefilled_db else workdir / f"genai-query-bench-{os.getpid()}.db"
    filled: dict[str, Any] | None = None
    if isinstance(db, str):
        if postgres.count_spans(db) == 0:
            filled = postgres.prefill(db, args.prefill, args.spans)
    elif not db.exists():
        filled = prefill(db, args.prefill, args.spans, 20_000, spread_s=24 * 3600)
    templates = build_templates(args.templates, args.spans, args.protocol)
    daemon = Daemon(db, [])
    report: dict[str, Any] = {
        "database": "postgresql" if isinstance(db, str) else str(db),
        "postgres_settings": args.postgres_setting,
        "prefill_seconds": filled["seconds"] if filled else None,
        "protocol": args.protocol,
        "readers": args.readers,
        "reader_pause_s": args.reader_pause,
        "runs": {},
    }
    try:
        daemon.wait_ready()
        query_port = int(next(m for line in daemon.lines if (m := QUERY_PORT.search(line))).group(2))
        big = big_trace(daemon.ports["http"])
        service = random.choice(["checkout-bot", "research-agent", "support-agent"])
        connection = http.client.HTTPConnection("127.0.0.1", query_port, timeout=30)
        connection.request("GET", "/api/services")
        services = json.loads(connection.getresponse().read())["data"]
        connection.close()
        service = next((name for name in services if name != "bench-big-trace"), service)
        target = daemon.targets(args.protocol)

        def run(phase: str, **options: Any) -> Run:
            result = measure(
                args.protocol,
                phase,
                templates,
                target,
                daemon.pid,
                args,
                clients=args.clients,
                database_cpu=server.cpu_seconds if server else None,
                **options,
            )
            cpu = result.daemon_cpu_s_per_10k_spans
            report["runs"][phase] = {
                "spans_per_s": result.spans_per_s,
                "latency_ms": result.latency_ms,
                "refused": result.refused,
                "errors": result.errors,
                # the load conditions: how busy the machine was, and with what
                "collector_cpu_cores": round(cpu * result.spans_per_s / 10_000, 2) if cpu is not None else None,
                "collector_cpu_s_per_10k_spans": cpu,  # what load on the machine disturbs least
                "host_cpu_busy_pct": result.host_cpu_busy_pct,
                "other_cpu_pct": result.other_cpu_pct,  # neither the collector, PostgreSQL nor the load (readers)
                "postgres_cpu_s_per_10k_spans": result.database_cpu_s_per_10k_spans,
            }
            print(
                f"bench: {phase}: {result.spans_per_s:,.0f} spans/s, p99 {result.latency_ms['p99']} ms, "
                f"collector CPU {cpu} s per 10k spans, "
                f"host CPU busy {result.host_cpu_busy_pct}% (others {result.other_cpu_pct}%)",
                file=sys.stderr,
            )
            return result

        reference = run("max")
        with_readers = Readers(query_port, args.readers, big, service, args.reader_pause)
        loaded = run("max + readers", during=with_readers.run_until)
        half = run("half", rate_spans=reference.spans_per_s / 2)
        timed = Readers(query_port, args.readers, big, service, args.reader_pause)
        half_loaded = run("half + readers", rate_spans=reference.spans_per_s / 2, during=timed.run_until)
        before_feed = run("max, before the websockets")
        reading = ReadingWebsocket(query_port)
        try:
            read = run("max + reading websocket")
        finally:
            reading.close()
        report["reading_websocket_bytes"] = reading.received
        stalled = live_websocket(query_port, stalled=True)
        try:
            unread = run("max + stalled websocket")
        finally:
            stalled.close()
        after_feed = run("max, after the websockets")
        around = max(1.0, (before_feed.spans_per_s + after_feed.spans_per_s) / 2)
        report["queries_ms"] = timed.summary()
        report["ingest_with_readers_ratio"] = round(loaded.spans_per_s / max(1.0, reference.spans_per_s), 3)
        report["ingest_at_half_with_readers_ratio"] = round(half_loaded.spans_per_s / max(1.0, half.spans_per_s), 3)
        # each against the mean of the two runs of ``max`` around them (phase 1 ran on a smaller database)
        report["ingest_with_reading_websocket_ratio"] = round(read.spans_per_s / around, 3)
        report["ingest_with_stalled_websocket_ratio"] = round(unread.spans_per_s / around, 3)
        report["ingest_max_after_before_ratio"] = round(after_feed.spans_per_s / max(1.0, before_feed.spans_per_s), 3)
        report["ingest_max_last_first_ratio"] = round(around / max(1.0, reference.spans_per_s), 3)
    finally:
        code = daemon.stop()
        if server is not None:
            server.close()
        elif not args.prefilled_db:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    report["collector_exit_code"] = code
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    failed = code != 0 or any(q["count"] == 0 or q["errors"] for q in report["queries_ms"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
