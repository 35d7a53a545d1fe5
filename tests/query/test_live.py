"""The WebSocket live feed with a real client: settled traces and breaches within a second, cost ticks,
filters, resuming breaches from a cursor, and a stalled subscriber dropped without slowing ingest."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.helpers import metric_value, otlp_request, scrape, wait_until
from tests.query.conftest import MS, SNAPSHOTS, Sender, send_dataset


def live_url(collector: Any, query: str = "") -> str:
    return collector.query_url.replace("http://", "ws://") + "/api/v1/live" + query


def receive_until(websocket: ClientConnection, wanted: Any, timeout: float = 10.0) -> list[tuple[int, dict[str, Any]]]:
    """Messages (with their arrival time) until ``wanted(messages)`` is true."""
    messages: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while not wanted([message for _, message in messages]):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got {[m['type'] for _, m in messages]}"
        text = websocket.recv(timeout=remaining)
        messages.append((time.time_ns(), json.loads(text)))
    return messages


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [message for message in messages if message["type"] == kind]


def test_subscriber_sees_settled_trace_breach_and_cost_within_a_second(start_collector: Any) -> None:
    collector = start_collector(snapshots=SNAPSHOTS)
    with connect(live_url(collector)) as everything, connect(live_url(collector, "?service=nobody")) as filtered:
        subscribed = json.loads(everything.recv(timeout=5))
        assert subscribed == {"type": "subscribed", "services": None, "heartbeat_seconds": 15.0, "queue_limit": 256}
        assert json.loads(filtered.recv(timeout=5))["services"] == ["nobody"]
        sender = Sender(collector.grpc_target)
        data = send_dataset(sender, time.time_ns() - 60_000 * MS)
        sender.shutdown()

        def settled(messages: list[dict[str, Any]]) -> bool:
            traces = {message["trace"]["trace_id"] for message in of_type(messages, "trace")}
            breaches = {message["breach"]["metric"] for message in of_type(messages, "breach")}
            return (
                data.agent in traces
                and breaches == {"latency_ms", "eval:faithfulness"}
                and any(tick["last_minute"]["llm_requests"] >= 42 for tick in of_type(messages, "cost_tick"))
            )

        received = receive_until(everything, settled)
        (settled_at,) = collector.query("SELECT settled_at_unix_nano FROM traces WHERE trace_id = ?", data.agent)[0]
        arrivals = {
            message.get("trace", message.get("breach", {})).get("trace_id"): arrived
            for arrived, message in received
            if message["type"] in ("trace", "breach")
        }
        assert arrivals[data.agent] - settled_at < 1_000 * MS, "the trace came more than a second after settling"
        for arrived, message in received:
            if message["type"] == "breach":
                assert arrived - message["breach"]["computed_at_unix_nano"] < 1_000 * MS
        messages = [message for _, message in received]
        (agent,) = [m["trace"] for m in of_type(messages, "trace") if m["trace"]["trace_id"] == data.agent]
        assert agent["root_span_name"] == "invoke_agent checkout" and agent["settled"]
        assert {breach["metric"] for breach in agent["breaches"]} == {"latency_ms", "eval:faithfulness"}
        tick = of_type(messages, "cost_tick")[-1]
        by_model = {row["model"]: row for row in tick["today"]["by_model"]}
        assert by_model["gpt-4o"]["input_tokens"] == 1200 and by_model["gpt-4o-mini"]["llm_requests"] == 40
        assert tick["today"]["cost_usd"] > 0 and tick["last_minute"]["llm_requests"] == 42

        # the filtered client got ticks, but no trace or breach of another service
        time.sleep(0.3)
        others = []
        while True:
            try:
                others.append(json.loads(filtered.recv(timeout=0.1)))
            except TimeoutError:
                break
        assert others and {message["type"] for message in others} <= {"cost_tick", "heartbeat"}
        exposition = scrape(collector)
        assert metric_value(exposition, "genai_collector_live_clients") == 2


def test_a_reconnecting_client_resumes_breaches_from_its_cursor(start_collector: Any) -> None:
    collector = start_collector(snapshots=SNAPSHOTS)
    sender = Sender(collector.grpc_target)
    with connect(live_url(collector)) as websocket:
        first = send_dataset(sender, time.time_ns() - 60_000 * MS)
        received = receive_until(websocket, lambda messages: len(of_type(messages, "breach")) == 2)
        # A span of the agent trace that came after it settled settles it again (its breaches move forward):
        # take the cursor once everything has settled for good.
        wait_until(
            lambda: collector.query("SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NULL") == [(0,)],
            timeout=10,
        )
        time.sleep(0.5)
        with contextlib.suppress(TimeoutError):
            while True:
                received.append((0, json.loads(websocket.recv(timeout=0.2))))
        cursor = of_type([m for _, m in received], "breach")[-1]["cursor"]
    second = send_dataset(sender, time.time_ns() - 50_000 * MS)  # two more breaches while disconnected
    sender.shutdown()
    wait_until(lambda: collector.query("SELECT count(*) FROM metric_snapshots WHERE breached") == [(4,)], timeout=10)
    with connect(live_url(collector)) as websocket:
        websocket.recv(timeout=5)
        websocket.send(json.dumps({"type": "subscribe", "breaches_after": cursor}))
        received = receive_until(websocket, lambda messages: len(of_type(messages, "breach")) == 2)
        replayed = {message["breach"]["trace_id"] for message in of_type([m for _, m in received], "breach")}
        assert replayed == {second.agent} and first.agent not in replayed
        websocket.send("not json")
        websocket.send(json.dumps({"type": "subscribe", "breaches_after": "garbage"}))
        errors = receive_until(websocket, lambda messages: len(of_type(messages, "error")) == 2)
        assert "cursor" in of_type([m for _, m in errors], "error")[1]["message"]


def stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads, with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


def test_a_stalled_subscriber_is_dropped_and_ingest_goes_on(start_collector: Any) -> None:
    collector = start_collector(
        snapshots={"settle_after": "100ms", "interval": "50ms"},
        query={"live_queue_limit": 8, "live_send_timeout": "1s"},
    )
    stalled = stalled_client(collector.collector.ports["query"])
    try:
        wait_until(
            lambda: metric_value(scrape(collector), "genai_collector_live_clients") == 1,
            timeout=5,
        )
        durations = []
        for _ in range(20):  # 20 requests of 250 one-span traces: 5,000 trace summaries for the stalled client
            request = otlp_request(0, service="flood")
            scope = request.resource_spans[0].scope_spans[0]
            for _ in range(250):
                scope.spans.extend(otlp_request(1, service="flood").resource_spans[0].scope_spans[0].spans)
            started = time.monotonic()
            response = httpx.post(
                collector.http_url + "/v1/traces",
                content=request.SerializeToString(),
                headers={"content-type": "application/x-protobuf"},
                timeout=10,
            )
            durations.append(time.monotonic() - started)
            assert response.status_code == 200
        assert max(durations) < 2, durations

        def dropped() -> bool:
            exposition = scrape(collector)
            return (
                metric_value(exposition, "genai_collector_live_clients") == 0
                and metric_value(exposition, "genai_collector_live_dropped_messages_total") > 0
                and metric_value(exposition, "genai_collector_live_disconnected_clients_total") == 1
            )

        wait_until(dropped, timeout=20, what="the stalled client to be disconnected")
        assert collector.query("SELECT count(*) FROM spans") == [(5_000,)]
    finally:
        stalled.close()
