"""kill -9 under load: every span the collector acknowledged is in the database after a restart.

The collector answers a request only after the transaction holding its spans has committed, so a
crash at any moment may lose requests that were in flight (their clients saw an error and resend)
but never one that was acknowledged. Both ``sqlite_synchronous`` modes promise that much for a crash
of the process (``normal`` gives up only on power loss).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import apsw
import httpx
import pytest

from tests.helpers import (
    Daemon,
    LoadClient,
    acknowledged_by,
    load,
    otlp_request,
    outcomes_of,
    span_keys,
    stored_span_keys,
    wait_until,
)

LOAD_SECONDS = 2.0
ENOUGH_SPANS = 5_000  # stop the load early once this many spans were acknowledged
MINIMUM_SPANS = 300  # below this the run proves little: fail rather than pass on an idle machine


def failures(client: LoadClient) -> int:
    return sum(client.outcomes.values()) - client.outcomes["http 200"] - client.outcomes["grpc OK"]


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_every_acknowledged_span_survives_kill_9(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "collector.db"
    with Daemon(db, "--sqlite-synchronous", synchronous) as daemon:
        daemon.wait_listening()
        with load(daemon, per_transport=3) as clients:
            deadline = time.monotonic() + LOAD_SECONDS
            while acknowledged_by(clients) < ENOUGH_SPANS and time.monotonic() < deadline:
                time.sleep(0.02)
            daemon.process.send_signal(signal.SIGKILL)
            assert daemon.process.wait(timeout=10) == -signal.SIGKILL
            wait_until(lambda: all(failures(client) for client in clients), 10, "every client to see the crash")

    acknowledged = {key for client in clients for key in client.acknowledged}
    sent = {key for client in clients for key in client.sent}
    assert len(acknowledged) >= MINIMUM_SPANS
    outcomes = outcomes_of(clients)
    assert outcomes["http 200"] and outcomes["grpc OK"], outcomes
    assert not {"http 200 partial", "grpc partial", "http 500", "grpc INTERNAL"} & set(outcomes), outcomes

    with Daemon(db) as restarted:
        restarted.wait_listening()
        stored = stored_span_keys(db)
        one_more = otlp_request(3)
        response = httpx.post(
            f"{restarted.http_url}/v1/traces",
            content=one_more.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert response.status_code == 200
        restarted.process.send_signal(signal.SIGTERM)
        assert restarted.process.wait(timeout=15) == 0, restarted.stderr
        assert " ERROR " not in restarted.stderr and "Traceback" not in restarted.stderr, restarted.stderr

    missing = acknowledged - stored
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged spans lost by kill -9"
    assert len(stored) >= len(acknowledged)
    assert stored <= sent, "the database holds spans nobody sent"
    assert stored_span_keys(db) == stored | set(span_keys(one_more))
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert connection.execute("PRAGMA integrity_check").get == "ok"
    finally:
        connection.close()
