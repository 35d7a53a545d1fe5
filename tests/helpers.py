"""Helpers shared by the tests: building OTLP requests, reading /metrics, running the daemon as a subprocess."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import apsw
import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]


def otlp_value(value: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (lists as arrays; anything else not a number as a string)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[otlp_value(item) for item in value]))
    return AnyValue(string_value=str(value))


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=otlp_value(value)) for key, value in attributes.items()]


def otlp_request(
    count: int,
    *,
    service: str = "test-service",
    trace_id: bytes | None = None,
    attributes: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    """A request with ``count`` spans of one trace (a fresh random trace unless ``trace_id`` is given)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values({"service.name": service}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    trace_id = trace_id or os.urandom(16)
    now = time.time_ns()
    for index in range(count):
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = os.urandom(8)
        span.name = f"span {index}"
        span.kind = 3
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now + 1_000_000
        span.attributes.extend(key_values(attributes or {}))
    return request


def metric_value(exposition: str, sample_name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when it is absent)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def scrape(collector: Any) -> str:
    """The Prometheus exposition of a running collector's ``/metrics`` (anything with an ``admin_url``)."""
    return httpx.get(collector.admin_url + "/metrics", timeout=30).text


def span_keys(request: ExportTraceServiceRequest) -> list[tuple[str, str]]:
    """The (trace_id, span_id) of every span of a request, in hex as the ``spans`` table stores them."""
    return [
        (span.trace_id.hex(), span.span_id.hex())
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def query_db(db: Path, sql: str, *bindings: Any) -> list[tuple[Any, ...]]:
    """Read a database the way a user would: a read-only connection of our own."""
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(connection.execute(sql, bindings))
    finally:
        connection.close()


def stored_span_keys(db: Path) -> set[tuple[str, str]]:
    """The (trace_id, span_id) of every stored span, read on a read-only connection of our own."""
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return set(connection.execute("SELECT trace_id, span_id FROM spans"))
    finally:
        connection.close()


@contextlib.contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as a long migration or a backup would."""
    blocker = apsw.Connection(str(db))
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def fill_disk(directory: Path) -> Path:
    """Take every free block of the file system ``directory`` is on; returns the filler, to unlink."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush when closing a full disk
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def wait_until(condition: Callable[[], T], timeout: float, what: str = "the condition", interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


LISTENING = re.compile(
    r"genai-collector listening: otlp-grpc (?P<grpc_host>\S+):(?P<grpc>\d+), "
    r"otlp-http (?P<http_host>\S+):(?P<http>\d+), admin (?P<admin_host>\S+):(?P<admin>\d+)"
)


def collector_environment(**variables: str) -> dict[str, str]:
    """This process's environment without any GENAI_COLLECTOR_* variable, plus ``variables``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GENAI_COLLECTOR_")}
    environment.update(variables)
    return environment


# Every listener of ``serve`` on an ephemeral loopback port.
PORT_0 = (
    "--grpc-endpoint",
    "127.0.0.1:0",
    "--http-endpoint",
    "127.0.0.1:0",
    "--admin-endpoint",
    "127.0.0.1:0",
    "--query-endpoint",
    "127.0.0.1:0",
)


# Ingest worker processes of every collector a test starts (``ingest.workers``): 1 receives in the main process.
# The ``ingest_workers`` fixture (tests/conftest.py) runs a test in both modes; ``--ingest-workers`` the whole suite.
# The daemon's own default (``auto``: a worker per CPU) would add 1-2 s of worker start-up to every collector, so
# the suite pins the count wherever it starts one and runs the default on purpose only (tests/workers/).
INGEST_WORKERS: int | str = 1


def collector_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "collector", *arguments]


class Daemon:
    """``python -m collector serve`` as a subprocess on port 0, its stderr collected line by line.

    Use it as a context manager: a daemon still running at the end of the block is killed. ``environment`` adds
    ``GENAI_COLLECTOR_*`` variables (a pod's); with ``db`` None, the database is the environment's. It runs
    ``INGEST_WORKERS`` ingest workers; with ``pin_workers`` False, whatever the arguments and environment say
    (the daemon's default without either).
    """

    def __init__(
        self,
        db: Path | str | None,
        *arguments: str,
        environment: dict[str, str] | None = None,
        pin_workers: bool = True,
    ) -> None:
        self.db = db
        self.ports: dict[str, int] = {}
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            collector_command(
                "serve",
                *(() if db is None else ("--db", str(db))),
                *PORT_0,
                *(("--ingest-workers", str(INGEST_WORKERS)) if pin_workers else ()),
                *arguments,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=collector_environment(**(environment or {})),
        )
        self._reader = threading.Thread(target=self._read_stderr, name="daemon-stderr", daemon=True)
        self._reader.start()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails with the whole stderr if it never comes."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := pattern.search(line):
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(f"no line matching {pattern.pattern!r}; stderr:\n" + "\n".join(self.lines))
                self._changed.wait(remaining)

    def wait_listening(self, timeout: float = 30.0) -> Daemon:
        """Read the chosen ports from the "listening" line, then wait for /readyz to answer 200."""
        match = self.wait_for_line(LISTENING, timeout)
        self.ports = {name: int(match.group(name)) for name in ("grpc", "http", "admin")}
        wait_until(lambda: self.readyz() == 200, timeout, "/readyz to answer 200")
        return self

    def readyz(self) -> int | None:
        """The status of GET /readyz, or None when the admin endpoint does not answer."""
        try:
            return httpx.get(f"{self.admin_url}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            return None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"


PROTOBUF = {"content-type": "application/x-protobuf"}


class HalfSentRequest:
    """An OTLP/HTTP protobuf request whose body is sent in two parts, on a raw socket."""

    def __init__(self, port: int, request: ExportTraceServiceRequest) -> None:
        self.keys = span_keys(request)
        body = request.SerializeToString()
        self._rest = body[len(body) // 2 :]
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.client_port: int = self._socket.getsockname()[1]
        head = (
            "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._socket.sendall(head.encode() + body[: len(body) // 2])

    def finish(self) -> str:
        """Send the rest of the body; the status line of the answer."""
        self._socket.sendall(self._rest)
        answer = b""
        while chunk := self._socket.recv(65536):  # the server closes the connection: it is shutting down
            answer += chunk
        return answer.split(b"\r\n", 1)[0].decode()

    def close(self) -> None:
        self._socket.close()


def drain_barrier(daemon: Daemon) -> list[tuple[str, str]]:
    """A complete request on another connection: once it is answered, the server has read what was sent
    before (the half-sent request has started). Returns the keys of its acknowledged spans."""
    request = otlp_request(1)
    response = httpx.post(f"{daemon.http_url}/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200
    return span_keys(request)


class LoadClient(threading.Thread):
    """Sends trace requests over one transport until ``stop`` is set, keeping the spans of every
    acknowledged request (HTTP 200 / gRPC OK) and a tally of every outcome."""

    def __init__(
        self,
        transport: str,
        target: str,
        stop: threading.Event,
        *,
        spans_per_request: int = 10,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name=f"load-{transport}", daemon=True)
        assert transport in ("http", "grpc")
        self.transport = transport
        self.target = target
        self.stop = stop
        self.spans_per_request = spans_per_request
        self.attributes = attributes
        self.sent: list[tuple[str, str]] = []
        self.acknowledged: list[tuple[str, str]] = []
        self.acknowledged_traces: list[tuple[str, float]] = []  # (trace id, wall-clock time of the answer), in order
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.transport == "http":
                with httpx.Client(timeout=10) as client:
                    self._send_until_stopped(lambda request: self._post(client, request))
            else:
                with grpc.insecure_channel(self.target) as channel:
                    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                    self._send_until_stopped(lambda request: self._export(stub, request))
        except BaseException as error:  # reported by the test, which asserts ``error is None``
            self.error = error

    def _send_until_stopped(self, send: Callable[[ExportTraceServiceRequest], str]) -> None:
        while not self.stop.is_set():
            request = otlp_request(self.spans_per_request, service=f"load-{self.transport}", attributes=self.attributes)
            keys = span_keys(request)
            self.sent.extend(keys)
            outcome = send(request)
            self.outcomes[outcome] += 1
            if outcome in ("http 200", "grpc OK"):
                self.acknowledged.extend(keys)
                self.acknowledged_traces.append((keys[0][0], time.time()))
            else:
                self.stop.wait(0.01)  # refused or unreachable: do not spin

    def _post(self, client: httpx.Client, request: ExportTraceServiceRequest) -> str:
        try:
            response = client.post(
                f"{self.target}/v1/traces",
                content=request.SerializeToString(),
                headers={"content-type": "application/x-protobuf"},
            )
        except httpx.HTTPError as error:
            return type(error).__name__
        if response.status_code == 200:
            answer = ExportTraceServiceResponse.FromString(response.content)
            if answer.HasField("partial_success"):
                return "http 200 partial"
        return f"http {response.status_code}"

    def _export(self, stub: trace_service_pb2_grpc.TraceServiceStub, request: ExportTraceServiceRequest) -> str:
        try:
            answer = stub.Export(request, timeout=10)
        except grpc.RpcError as error:
            return f"grpc {error.code().name}"
        return "grpc partial" if answer.HasField("partial_success") else "grpc OK"


def acknowledged_by(clients: list[LoadClient]) -> int:
    return sum(len(client.acknowledged) for client in clients)


@contextlib.contextmanager
def load(daemon: Any, per_transport: int = 2, **client_options: Any) -> Iterator[list[LoadClient]]:
    """``per_transport`` OTLP/HTTP and as many OTLP/gRPC clients sending for the duration of the block
    (to a ``Daemon`` or an in-process collector; ``client_options`` go to each ``LoadClient``)."""
    stop = threading.Event()
    clients = [LoadClient("http", daemon.http_url, stop, **client_options) for _ in range(per_transport)]
    clients += [LoadClient("grpc", daemon.grpc_target, stop, **client_options) for _ in range(per_transport)]
    with running(clients, stop):
        yield clients


Client = TypeVar("Client", bound=threading.Thread)


@contextlib.contextmanager
def running(clients: list[Client], stop: threading.Event, join_timeout: float = 30) -> Iterator[list[Client]]:
    """Client threads (each with an ``error`` attribute) running for the duration of the block: ``stop`` is set on
    leaving it and each is waited for; a client that failed or did not stop fails the test."""
    for client in clients:
        client.start()
    try:
        yield clients
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=join_timeout)
    for client in clients:
        assert getattr(client, "error", None) is None, f"{client.name} failed: {getattr(client, 'error', None)!r}"
        assert not client.is_alive(), f"{client.name} still sending"


def outcomes_of(clients: list[LoadClient]) -> collections.Counter[str]:
    return sum((client.outcomes for client in clients), start=collections.Counter())


def trace_request(trace_id: bytes, spans: list[dict[str, Any]], *, service: str = "agent-service") -> Any:
    """A request with the given spans of one trace; each dict has span_id (bytes) and optionally
    parent (bytes), name, start and end (ns), error (bool) and attributes."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values({"service.name": service}))
    scope_spans = resource_spans.scope_spans.add()
    for described in spans:
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = described["span_id"]
        span.parent_span_id = described.get("parent", b"")
        span.name = described.get("name", "step")
        span.start_time_unix_nano = described.get("start", 1_000)
        span.end_time_unix_nano = described.get("end", 2_000)
        if described.get("error"):
            span.status.code = 2
        span.attributes.extend(key_values(described.get("attributes", {})))
    return request


def missing(reason: str) -> NoReturn:
    """A tool the test needs is missing: skipped on a developer's machine, a failure in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI needs it (.ci/run installs it)")
    pytest.skip(reason)


def require_tool(name: str, package: str | None = None) -> str:
    """The path of a command the test needs (``package``: the Debian package that has it), or ``missing``."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed" + (f" (Debian package {package})" if package else ""))
    return path


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now, for a process that cannot be given port 0."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
