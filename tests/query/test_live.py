"""The WebSocket live feed with a real client: settled traces and breaches within a second, cost ticks,
filters, traces settled together sent together, resuming breaches from a cursor, a slow subscriber told what it
lost, and a stalled subscriber dropped without slowing ingest."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
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


def traces_in(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace summaries of the ``traces`` messages, in the order they came."""
    return [summary for message in of_type(messages, "traces") for summary in message["traces"]]


def breaches_in(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [breach for message in of_type(messages, "breaches") for breach in message["breaches"]]


def one_span_traces(count: int, service: str, name: str = "span 0") -> ExportTraceServiceRequest:
    """One request of ``count`` traces of one span each, named ``name``."""
    request = otlp_request(0, service=service)
    scope = request.resource_spans[0].scope_spans[0]
    for _ in range(count):
        scope.spans.extend(otlp_request(1, service=service).resource_spans[0].scope_spans[0].spans)
    for span in scope.spans:
        span.name = name
    return request


def post(collector: Any, request: ExportTraceServiceRequest) -> None:
    response = httpx.post(
        collector.http_url + "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    assert response.status_code == 200


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
            traces = {summary["trace_id"] for summary in traces_in(messages)}
            breaches = {breach["metric"] for breach in breaches_in(messages)}
            return (
                data.agent in traces
                and breaches == {"latency_ms", "eval:faithfulness"}
                and any(tick["last_minute"]["llm_requests"] >= 42 for tick in of_type(messages, "cost_tick"))
            )

        received = receive_until(everything, settled)
        (settled_at,) = collector.query("SELECT settled_at_unix_nano FROM traces WHERE trace_id = ?", data.agent)[0]
        arrivals = {summary["trace_id"]: arrived for arrived, m in received for summary in traces_in([m])}
        assert arrivals[data.agent] - settled_at < 1_000 * MS, "the trace came more than a second after settling"
        for arrived, message in received:
            for breach in breaches_in([message]):
                assert arrived - breach["computed_at_unix_nano"] < 1_000 * MS
        messages = [message for _, message in received]
        (agent,) = [summary for summary in traces_in(messages) if summary["trace_id"] == data.agent]
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
        received = receive_until(websocket, lambda messages: len(breaches_in(messages)) == 2)
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
        cursor = of_type([m for _, m in received], "breaches")[-1]["cursor"]
    second = send_dataset(sender, time.time_ns() - 50_000 * MS)  # two more breaches while disconnected
    sender.shutdown()
    wait_until(lambda: collector.query("SELECT count(*) FROM metric_snapshots WHERE breached") == [(4,)], timeout=10)
    with connect(live_url(collector)) as websocket:
        websocket.recv(timeout=5)
        websocket.send(json.dumps({"type": "subscribe", "breaches_after": cursor}))
        received = receive_until(websocket, lambda messages: len(breaches_in(messages)) == 2)
        replayed = {breach["trace_id"] for breach in breaches_in([m for _, m in received])}
        assert replayed == {second.agent} and first.agent not in replayed
        websocket.send("not json")
        websocket.send(json.dumps({"type": "subscribe", "breaches_after": "garbage"}))
        errors = receive_until(websocket, lambda messages: len(of_type(messages, "error")) == 2)
        assert of_type([m for _, m in errors], "error")[0]["message"].startswith("not JSON: ")
        assert "cursor" in of_type([m for _, m in errors], "error")[1]["message"]


def test_traces_that_settle_together_come_together_each_once_and_filtered_by_service(start_collector: Any) -> None:
    collector = start_collector(snapshots={"settle_after": "100ms", "interval": "50ms"})
    with connect(live_url(collector)) as everything, connect(live_url(collector, "?service=blue")) as blue:
        for websocket in (everything, blue):
            receive_until(websocket, lambda messages: of_type(messages, "subscribed"))
        request = one_span_traces(150, "blue")
        request.resource_spans.extend(one_span_traces(150, "green").resource_spans)
        post(collector, request)
        sent = {
            span.trace_id.hex(): r.resource.attributes[0].value.string_value
            for r in request.resource_spans
            for span in r.scope_spans[0].spans
        }

        messages = [m for _, m in receive_until(everything, lambda messages: len(traces_in(messages)) >= 300)]
        traces = traces_in(messages)
        assert sorted(summary["trace_id"] for summary in traces) == sorted(sent)  # each once
        batches = of_type(messages, "traces")
        assert all(1 <= len(message["traces"]) <= 100 for message in batches)
        assert len(batches) <= 10, [len(message["traces"]) for message in batches]  # not one message per trace

        blues = traces_in([m for _, m in receive_until(blue, lambda messages: len(traces_in(messages)) >= 150)])
        assert sorted(summary["trace_id"] for summary in blues) == sorted(t for t, s in sent.items() if s == "blue")
        assert {summary["service_name"] for summary in blues} == {"blue"}


def test_a_slow_subscriber_is_told_how_many_traces_it_lost(start_collector: Any) -> None:
    """With a queue of one message, the three messages of 300 traces settled together leave room for one: the
    client is told with ``lagged`` what the others held (every trace is either received or counted as lost),
    and stays connected."""
    collector = start_collector(snapshots={"settle_after": "100ms", "interval": "50ms"}, query={"live_queue_limit": 1})
    with connect(live_url(collector)) as websocket:
        receive_until(websocket, lambda messages: of_type(messages, "subscribed"))
        post(collector, one_span_traces(300, "burst"))

        def accounted(messages: list[dict[str, Any]]) -> bool:
            lost = sum(message["traces"] for message in of_type(messages, "lagged"))
            return len(traces_in(messages)) + lost >= 300

        messages = [m for _, m in receive_until(websocket, accounted)]
        lagged = of_type(messages, "lagged")
        lost = sum(message["traces"] for message in lagged)
        assert lost > 0 and len(traces_in(messages)) + lost == 300
        assert all(message["breaches"] == 0 and message["dropped"] >= 1 for message in lagged)
        exposition = scrape(collector)
        assert metric_value(exposition, "genai_collector_live_dropped_traces_total") == lost
        assert metric_value(exposition, "genai_collector_live_dropped_messages_total") >= sum(
            message["dropped"] for message in lagged
        )
        receive_until(websocket, lambda messages: of_type(messages, "cost_tick"))  # still connected


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
        query={"live_queue_limit": 2, "live_send_timeout": "1s"},
    )
    stalled = stalled_client(collector.collector.ports["query"])
    try:
        wait_until(
            lambda: metric_value(scrape(collector), "genai_collector_live_clients") == 1,
            timeout=5,
        )
        durations = []
        # 20 requests of 250 one-span traces: 5,000 trace summaries of ~1.6 KB, more than the socket buffers
        # hold (loopback's grow to 4 MB), in 3 messages per request, one more than the queue holds
        for _ in range(20):
            request = one_span_traces(250, "flood", name="flood " + "x" * 1_000)
            started = time.monotonic()
            post(collector, request)
            durations.append(time.monotonic() - started)
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
