"""The drivers: one sender per protocol (OTLP/HTTP protobuf or JSON, OTLP/gRPC) and the load, worker processes
of sender threads at a maximum or a fixed rate."""

from __future__ import annotations

import http.client
import itertools
import json
import multiprocessing
import random
import resource
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from bench.traces import Template, nonce_for

PROTOCOLS = ("http-protobuf", "http-json", "grpc")
GRPC_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# --- senders ---------------------------------------------------------------------------------

# What one request came to; only OK and PARTIAL acknowledge spans.
OK, PARTIAL, REFUSED, REFUSED_NO_HINT, TIMEOUT = "ok", "partial", "refused", "refused without retry hint", "timeout"


class HttpSender:
    """One keep-alive HTTP/1.1 connection (http.client: a fraction of httpx's CPU per request)."""

    def __init__(
        self, url: str, content_type: str, timeout: float, ca_file: str | None = None, api_key: str | None = None
    ) -> None:
        parsed = urlsplit(url)
        self._secure = parsed.scheme == "https"
        self._tls = ssl.create_default_context(cafile=ca_file) if self._secure else None
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._secure else 80)
        self._path = parsed.path or "/v1/traces"
        self._headers = {"Content-Type": content_type}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._json = content_type == "application/json"
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def send(self, body: bytes, spans: int) -> tuple[str, int]:
        """(outcome, spans acknowledged)."""
        for attempt in (1, 2):
            reused = self._connection is not None
            try:
                if self._connection is None:
                    self._connection = (
                        http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
                        if self._secure
                        else http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                    )
                    self._connection.connect()
                    # As urllib3 (the OTel SDK's HTTP exporter) does: no Nagle delay on the request's last segment.
                    self._connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._connection.request("POST", self._path, body, self._headers)
                response = self._connection.getresponse()
                payload = response.read()
            except TimeoutError:
                self.close()
                return TIMEOUT, 0
            except (http.client.HTTPException, OSError) as error:
                self.close()
                # A kept-alive connection the server closed while idle: reopen it once, as clients do.
                if (
                    attempt == 1
                    and reused
                    and isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                ):
                    continue
                return f"connection error ({type(error).__name__})", 0
            if response.will_close:
                self.close()
            return self._outcome(response.status, response.getheader("Retry-After"), payload, spans)
        raise AssertionError("unreachable")

    def _outcome(self, status: int, retry_after: str | None, payload: bytes, spans: int) -> tuple[str, int]:
        if status == 200:
            rejected = _rejected_json(payload) if self._json else _rejected_protobuf(payload)
            return (PARTIAL, spans - rejected) if rejected else (OK, spans)
        if status in (429, 503):
            return (REFUSED if retry_after else REFUSED_NO_HINT), 0
        return f"http {status}", 0

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _rejected_protobuf(payload: bytes) -> int:
    if not payload:
        return 0
    return ExportTraceServiceResponse.FromString(payload).partial_success.rejected_spans


def _rejected_json(payload: bytes) -> int:
    if not payload or payload.strip() == b"{}":
        return 0
    partial = json.loads(payload).get("partialSuccess") or {}
    return int(partial.get("rejectedSpans") or 0)


class GrpcSender:
    """A unary Export call on a channel of its own (its own HTTP/2 connection), sending raw bytes."""

    RETRY_KEYS = ("grpc-status-details-bin", "google.rpc.retryinfo-bin")

    def __init__(self, target: str, timeout: float, ca_file: str | None = None, api_key: str | None = None) -> None:
        options = [
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
        ]
        if ca_file:
            credentials = grpc.ssl_channel_credentials(Path(ca_file).read_bytes())
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._export = self._channel.unary_unary(GRPC_EXPORT)  # no serializers: bytes in, bytes out
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None

    def send(self, body: bytes, spans: int) -> tuple[str, int]:
        try:
            payload = self._export(body, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return TIMEOUT, 0
            if code == grpc.StatusCode.UNAVAILABLE:  # also what an unreachable server gives: no hint then
                trailers = {key for key, _ in error.trailing_metadata() or ()}
                return (REFUSED if trailers.intersection(self.RETRY_KEYS) else REFUSED_NO_HINT), 0
            return f"grpc {code.name}", 0
        rejected = _rejected_protobuf(payload)
        return (PARTIAL, spans - rejected) if rejected else (OK, spans)

    def close(self) -> None:
        self._channel.close()


# --- the load: worker processes of sender threads --------------------------------------------


# One per request: (due or started, started, finished, outcome, spans acknowledged, spans sent).
Record = tuple[float, float, float, str, int, int]


@dataclass
class LoadPlan:
    protocol: str
    targets: tuple[str, ...]  # URLs for HTTP, host:port for gRPC; one per collector replica, the clients in turn
    clients: int
    processes: int
    start_at: float  # time.monotonic() of the first request (every process shares the clock)
    stop_at: float
    rate: float | None  # requests per second across every process; None: each client sends back to back
    timeout: float
    salt: int
    ca_file: str | None = None  # TLS: the CA that signed the collector's certificate
    api_key: str | None = None  # sent as Authorization: Bearer


def _sender(plan: LoadPlan, client: int) -> HttpSender | GrpcSender:
    target = plan.targets[client % len(plan.targets)]
    if plan.protocol == "grpc":
        return GrpcSender(target, plan.timeout, plan.ca_file, plan.api_key)
    content_type = "application/json" if plan.protocol == "http-json" else "application/x-protobuf"
    return HttpSender(target, content_type, plan.timeout, plan.ca_file, plan.api_key)


def _client_thread(
    plan: LoadPlan,
    templates: list[Template],
    worker: int,
    client: int,
    schedule: Iterator[int],
    sequence: Iterator[int],
    out: list[Record],
) -> None:
    sender = _sender(plan, worker + client * plan.processes)
    rng = random.Random(worker * 1000 + client)
    protocol = plan.protocol
    try:
        while True:
            if plan.rate is None:
                started = time.monotonic()
                if started >= plan.stop_at:
                    break
                scheduled = started
            else:
                # Open loop: request n is due at start_at + n / rate, whether or not earlier ones have answered.
                scheduled = plan.start_at + (next(schedule) * plan.processes + worker) / plan.rate
                if scheduled >= plan.stop_at:
                    break
                delay = scheduled - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                started = time.monotonic()
            template = templates[rng.randrange(len(templates))]
            nonce = (plan.salt << 40) | (worker << 32) | next(sequence)
            body = template.with_nonce(nonce_for(protocol, nonce))
            outcome, acknowledged = sender.send(body, template.spans)
            finished = time.monotonic()
            out.append((scheduled, started, finished, outcome, acknowledged, template.spans))
            if plan.rate is None and outcome not in (OK, PARTIAL):
                time.sleep(0.01)  # refused or failing: do not spin
    finally:
        sender.close()


def _worker_main(plan: LoadPlan, templates: list[Template], worker: int, clients: int, pipe: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
    schedule = itertools.count()  # next() on a count is atomic under the GIL: the threads share it
    sequence = itertools.count(1)
    outs: list[list[Record]] = [[] for _ in range(clients)]
    threads = [
        threading.Thread(
            target=_client_thread, args=(plan, templates, worker, c, schedule, sequence, outs[c]), daemon=True
        )
        for c in range(clients)
    ]
    delay = plan.start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    requests = [request for out in outs for request in out]
    pipe.send(
        (requests, usage.ru_utime + usage.ru_stime - cpu_before)
    )  # plain data: the parent may name this module otherwise
    pipe.close()


class Load:
    """The plan running in ``plan.processes`` forked workers (forked before this process starts any
    sampling thread); ``results`` waits for them and gives every request's record and their CPU."""

    def __init__(self, plan: LoadPlan, templates: list[Template]) -> None:
        context = multiprocessing.get_context("fork")  # the templates are inherited, not pickled
        shares = [
            plan.clients // plan.processes + (1 if w < plan.clients % plan.processes else 0)
            for w in range(plan.processes)
        ]
        self._workers = []
        for worker, clients in enumerate(shares):
            if not clients:
                continue
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_worker_main, args=(plan, templates, worker, clients, sender), daemon=True)
            process.start()
            sender.close()
            self._workers.append((process, receiver))

    def results(self) -> tuple[list[Record], float]:
        requests: list[Record] = []
        cpu = 0.0
        for process, receiver in self._workers:
            try:
                records, worker_cpu = receiver.recv()
            except EOFError:
                process.join()
                raise SystemExit(f"bench: a client process died (exit code {process.exitcode})") from None
            requests.extend(records)
            cpu += worker_cpu
            process.join()
        return requests, cpu
