"""Start, run and stop: health endpoints, graceful shutdown on SIGTERM/SIGINT under load, and SQLite in WAL mode.

The shutdown tests run the daemon as a subprocess, the way a supervisor does, and keep one OTLP/HTTP
request half-sent across the signal: the drain has to wait for it, which makes the drain observable
(``/readyz`` answers 503) and shows that a request in flight at the signal still gets its commit.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import apsw
import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.helpers import (
    PROTOBUF,
    Daemon,
    HalfSentRequest,
    acknowledged_by,
    drain_barrier,
    load,
    metric_value,
    otlp_request,
    outcomes_of,
    scrape,
    stored_span_keys,
    wait_until,
)

SHUTDOWN_TIMEOUT = 5.0
# uvicorn checks for shutdown every 0.1 s and gives connections whole seconds; allow for that and a busy machine.
EXIT_MARGIN = 2.0
EXPECTED_DURING_SHUTDOWN = {
    "http 200",
    "grpc OK",
    "http 503",  # refused with Retry-After while draining
    "grpc UNAVAILABLE",  # refused, or the port is closed
    # gRPC core cancels calls it has received but not yet handed to a handler when shutdown begins;
    # nothing of theirs was accepted, and OTLP clients retry CANCELLED.
    "grpc CANCELLED",
    "ConnectError",  # the OTLP/HTTP port is closed
    "RemoteProtocolError",  # a keep-alive connection closed by the server as the request went out
    "ReadError",
    "WriteError",
}


def test_healthz_and_readyz_answer_200_while_running(tmp_path: Path) -> None:
    with Daemon(tmp_path / "collector.db") as daemon:
        daemon.wait_listening()
        healthz = httpx.get(f"{daemon.admin_url}/healthz")
        readyz = httpx.get(f"{daemon.admin_url}/readyz")
        assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
        assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=SHUTDOWN_TIMEOUT + EXIT_MARGIN) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_under_load_and_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    db = tmp_path / "collector.db"
    with Daemon(db, "--shutdown-timeout", f"{SHUTDOWN_TIMEOUT}s") as daemon:
        daemon.wait_listening()
        with load(daemon) as clients:
            wait_until(lambda: acknowledged_by(clients) >= 400, 20, "400 acknowledged spans")
            in_flight = HalfSentRequest(daemon.ports["http"], otlp_request(7))
            barrier = drain_barrier(daemon)

            signalled = time.monotonic()
            daemon.process.send_signal(signum)
            readyz = wait_until(
                lambda: (answer := httpx.get(f"{daemon.admin_url}/readyz")).status_code == 503 and answer,
                SHUTDOWN_TIMEOUT,
                "/readyz to turn 503 during the drain",
            )
            assert readyz.json() == {"status": "unready", "reasons": ["shutting down"]}
            assert httpx.get(f"{daemon.admin_url}/healthz").status_code == 200
            assert daemon.process.poll() is None, "the daemon must wait for the request in flight"

            assert in_flight.finish() == "HTTP/1.1 200 OK"
            in_flight.close()
            exit_code = daemon.process.wait(timeout=SHUTDOWN_TIMEOUT + EXIT_MARGIN)
            stopped_after = time.monotonic() - signalled

    assert exit_code == 0, daemon.stderr
    assert stopped_after < SHUTDOWN_TIMEOUT + EXIT_MARGIN
    assert not Path(f"{db}-wal").exists(), "a clean stop checkpoints the write-ahead log into the database"
    acknowledged = {key for client in clients for key in client.acknowledged} | {*in_flight.keys, *barrier}
    sent = {key for client in clients for key in client.sent} | {*in_flight.keys, *barrier}
    stored = stored_span_keys(db)
    assert acknowledged - stored == set(), "acknowledged spans missing from the database"
    assert stored <= sent
    outcomes = outcomes_of(clients)
    assert set(outcomes) <= EXPECTED_DURING_SHUTDOWN, outcomes
    assert "signal received: draining" in daemon.stderr
    assert "genai-collector stopped" in daemon.stderr
    assert " ERROR " not in daemon.stderr and "Traceback" not in daemon.stderr, daemon.stderr


def test_client_stuck_mid_request_does_not_fail_the_shutdown(tmp_path: Path) -> None:
    """A client that never finishes its request holds the drain until the deadline, no longer; nothing
    accepted is lost, so the exit is still 0 (it was 1, with "deadline passed with 0 spans not committed")."""
    db = tmp_path / "collector.db"
    with Daemon(db, "--shutdown-timeout", "2s") as daemon:
        daemon.wait_listening()
        stuck = HalfSentRequest(daemon.ports["http"], otlp_request(3))
        barrier = drain_barrier(daemon)
        signalled = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        exit_code = daemon.process.wait(timeout=2 + EXIT_MARGIN)
        stopped_after = time.monotonic() - signalled
        stuck.close()
    assert exit_code == 0, daemon.stderr
    assert 2.0 <= stopped_after < 2 + EXIT_MARGIN
    assert "spans not committed" not in daemon.stderr
    assert stored_span_keys(db) == set(barrier)


def test_resent_request_is_stored_once(collector: Any) -> None:
    request = otlp_request(6)
    body = request.SerializeToString()
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    with httpx.Client() as client:
        for _ in range(2):
            assert client.post(f"{collector.http_url}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    with grpc.insecure_channel(collector.grpc_target) as channel:
        answer = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)
    assert not answer.HasField("partial_success")

    assert collector.query("SELECT count(*) FROM spans WHERE trace_id = ?", trace_id) == [(6,)]
    assert collector.query("SELECT count(*) FROM spans") == [(6,)]
    exposition = scrape(collector)
    assert metric_value(exposition, "genai_collector_duplicate_spans_total") == 12


def test_database_is_in_wal_mode_and_an_open_reader_does_not_block_ingest(collector: Any) -> None:
    def send(spans: int) -> None:
        response = httpx.post(
            f"{collector.http_url}/v1/traces", content=otlp_request(spans).SerializeToString(), headers=PROTOBUF
        )
        assert response.status_code == 200

    send(5)
    db = str(collector.settings.db)
    reader = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert reader.pragma("journal_mode") == "wal"
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM spans").get == 5  # the read transaction holds its snapshot

        # A writer blocked by the reader would wait out the busy timeout (5 s) and then answer 503; each send
        # is timed alone, so a slow machine adding up 20 quick sends cannot fail the test.
        for _ in range(20):
            started = time.monotonic()
            send(5)
            assert time.monotonic() - started < 4

        assert reader.execute("SELECT count(*) FROM spans").get == 5
        assert collector.query("SELECT count(*) FROM spans") == [(105,)]
        assert Path(f"{db}-wal").exists()
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM spans").get == 105
    finally:
        reader.close()
