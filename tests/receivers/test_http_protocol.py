"""Slow and vanishing OTLP/HTTP clients, over raw sockets that send a byte at a time: header and body
deadlines, no place taken from fast clients while a body trickles in, a disconnect is not an error of ours."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.helpers import metric_value, otlp_request, scrape, wait_until

PROTOBUF = {"content-type": "application/x-protobuf"}


def headers(port: int, length: int) -> bytes:
    return (
        f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@contextmanager
def connection(running: Any) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", running.collector.ports["otlp_http"]), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def bad_requests(running: Any, reason: str) -> float:
    metrics = scrape(running)
    return metric_value(
        metrics, "genai_collector_receiver_bad_requests_total", receiver="otlp", transport="http", reason=reason
    )


def requests_answered(running: Any, status: str) -> float:
    metrics = scrape(running)
    return metric_value(metrics, "genai_collector_requests_total", transport="http", signal="traces", status=status)


def read_response(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_headers_sent_a_byte_at_a_time_are_cut_off(start_collector: Any) -> None:
    running = start_collector(header_read_timeout="500ms")
    with connection(running) as sock:
        started = time.monotonic()
        closed = False
        for byte in headers(running.collector.ports["otlp_http"], 10):
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > 3:
                break
        if not closed:
            sock.settimeout(3)
            assert sock.recv(1) == b""
        assert time.monotonic() - started < 2.5
    assert bad_requests(running, "header_timeout") == 1


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_deadline(start_collector: Any) -> None:
    running = start_collector(body_read_timeout="1s")
    body = otlp_request(2).SerializeToString()
    with connection(running) as sock:
        sock.sendall(headers(running.collector.ports["otlp_http"], len(body)))
        started = time.monotonic()
        sock.setblocking(False)
        answer = b""
        for byte in body:
            try:
                sock.send(bytes([byte]))
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            except OSError:
                break
            if answer or time.monotonic() - started > 5:
                break
            time.sleep(0.1)
        sock.setblocking(True)
        sock.settimeout(5)
        with suppress(OSError):
            answer += read_response(sock)
    assert time.monotonic() - started < 3
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert status_pb2.Status.FromString(content).code == code_pb2.DEADLINE_EXCEEDED
    assert bad_requests(running, "body_timeout") == 1
    assert running.query("SELECT count(*) FROM spans") == [(0,)]


def test_slow_uploads_do_not_take_the_places_of_fast_clients(start_collector: Any) -> None:
    """Twice max_concurrent_requests connections each send one byte of their body, then stall."""
    running = start_collector(max_concurrent_requests=4, body_read_timeout="30s")
    port = running.collector.ports["otlp_http"]
    with ExitStack() as stack:
        for _ in range(8):
            sock = stack.enter_context(connection(running))
            sock.sendall(headers(port, 1000) + b"\x0a")
        time.sleep(0.3)
        started = time.monotonic()
        response = httpx.post(
            running.http_url + "/v1/traces", content=otlp_request(3).SerializeToString(), headers=PROTOBUF, timeout=10
        )
        assert response.status_code == 200
        with grpc.insecure_channel(running.grpc_target) as channel:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(otlp_request(3), timeout=10)
        assert time.monotonic() - started < 5
        assert httpx.get(running.admin_url + "/readyz").status_code == 200
    assert running.query("SELECT count(*) FROM spans") == [(6,)]


def test_a_client_that_disconnects_mid_body_is_counted_and_logged_once_without_traceback(
    start_collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_collector()
    port = running.collector.ports["otlp_http"]
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            with connection(running) as sock:
                sock.sendall(headers(port, 10_000) + b"\x0a\x02")
                time.sleep(0.1)
        wait_until(lambda: bad_requests(running, "client_disconnected") == 3, 10, "three disconnects counted")
    assert requests_answered(running, "499") == 3
    assert requests_answered(running, "500") == 0
    assert not [record for record in caplog.records if record.exc_info]
    assert len([record for record in caplog.records if "disconnected" in record.getMessage()]) <= 1


def test_bodies_being_received_have_a_memory_budget(start_collector: Any) -> None:
    """Bodies take no place among the requests in progress while they arrive, so their bytes are bounded
    together instead: max_concurrent_requests bodies of max_request_size (here 1 of 64 KiB)."""
    running = start_collector(max_concurrent_requests=1, max_request_size="64KiB", retry_after="1s")
    port = running.collector.ports["otlp_http"]
    with connection(running) as stalled:
        stalled.sendall(headers(port, 60_000) + b"\x0a" * 50_000)
        time.sleep(0.3)
        big = otlp_request(1, attributes={"gen_ai.prompt": "x" * 30_000}).SerializeToString()
        refused = httpx.post(running.http_url + "/v1/traces", content=big, headers=PROTOBUF, timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "bytes of request bodies" in status_pb2.Status.FromString(refused.content).message
        small = httpx.post(
            running.http_url + "/v1/traces", content=otlp_request(1).SerializeToString(), headers=PROTOBUF, timeout=10
        )
        assert small.status_code == 200
    metrics = scrape(running)
    assert (
        metric_value(
            metrics,
            "genai_collector_receiver_refused_requests_total",
            receiver="otlp",
            transport="http",
            reason="too_many_requests",
        )
        == 1
    )
