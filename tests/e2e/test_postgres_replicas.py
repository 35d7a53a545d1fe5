"""Replicas of the collector on one PostgreSQL database, as real processes under real OTLP load, and what their
failures may and may not cost.

Clients send agent traces over OTLP/HTTP (protobuf and JSON) and OTLP/gRPC, each trace split over two requests
that go to different replicas, and send some acknowledged requests again to another replica (an exporter's
retry after a lost answer). A request that fails is sent again to the next replica after the hint the collector
gave (``Retry-After``, gRPC ``RetryInfo``), until one acknowledges it. Then the database must hold every span
once, every trace's rollup must be the sum of its spans, and every breach must be one row and one count in the
replicas' ``/metrics``.
"""

from __future__ import annotations

import collections
import contextlib
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import yaml
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Daemon, missing, running, scrape, trace_request, wait_until
from tests.postgres import Cluster, server_binaries
from tests.receivers.test_otlp_http import as_json
from tests.storage.postgres.test_replicas import deadlocks

TOKEN_LIMIT = 2_500  # a trace of more total tokens breaches; about a third of the traces below do
# Longer than the load runs before the kill: no trace is quiet that long before it, so the killed replica
# settled nothing and counted no breach, and the survivors' counters hold every breach (checked, not assumed).
SETTLE_AFTER = 5.0
ENCODINGS = ("protobuf", "json", "grpc")
GIVE_UP = 40.0  # seconds a client keeps retrying one request
RESEND_SHARE = 0.25  # of acknowledged requests, sent again to another replica
NOT_RETRIED = ("http 200 partial", "grpc partial", "http 400", "http 500", "grpc INVALID_ARGUMENT", "grpc INTERNAL")


def config_file(tmp_path: Path, **overrides: Any) -> str:
    path = tmp_path / "collector.yaml"
    settings = {
        "batch_max_age": "5ms",
        "snapshots": {
            "settle_after": f"{SETTLE_AFTER}s",
            "interval": "100ms",
            "rules": [{"metric": "total_tokens", "above": TOKEN_LIMIT}, {"metric": "error_count", "above": 0}],
        },
        **overrides,
    }
    path.write_text(yaml.safe_dump(settings))
    return str(path)


@dataclass
class Expected:
    """What a client sent of one trace: the figures its rollup must show."""

    span_count: int = 0
    error_count: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def breaches(self, trace_id: str) -> set[tuple[str, str]]:
        found = set()
        if self.input_tokens + self.output_tokens > TOKEN_LIMIT:
            found.add((trace_id, "total_tokens"))
        if self.error_count:
            found.add((trace_id, "error_count"))
        return found


def agent_trace(rng: random.Random) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], Expected]:
    """An agent's root span and one to four chat calls under it, some failed: its two halves and its figures."""
    trace_id = rng.randbytes(16)
    root = rng.randbytes(8)
    now = time.time_ns()
    spans: list[dict[str, Any]] = [
        {
            "span_id": root,
            "name": "invoke_agent planner",
            "start": now,
            "end": now + 80_000_000,
            "attributes": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"},
        }
    ]
    expected = Expected(span_count=1)
    for index in range(rng.randint(1, 4)):
        input_tokens, output_tokens, failed = rng.randint(100, 1_500), rng.randint(10, 400), rng.random() < 0.1
        spans.append(
            {
                "span_id": rng.randbytes(8),
                "parent": root,
                "name": "chat gpt-4o-mini",
                "start": now + index * 10_000_000,
                "end": now + (index + 1) * 10_000_000,
                "error": failed,
                "attributes": {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                },
            }
        )
        expected.span_count += 1
        expected.error_count += failed
        expected.llm_calls += 1
        expected.input_tokens += input_tokens
        expected.output_tokens += output_tokens
    return trace_id.hex(), spans[:2], spans[2:], expected


def joined(parts: Sequence[ExportTraceServiceRequest]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for part in parts:
        request.resource_spans.extend(part.resource_spans)
    return request


def retry_delay(error: grpc.RpcError) -> float | None:
    """The delay of the ``RetryInfo`` an UNAVAILABLE answer carries, if it has one."""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "google.rpc.retryinfo-bin":
            delay = error_details_pb2.RetryInfo.FromString(value).retry_delay
            return delay.seconds + delay.nanos / 1e9
    return None


@dataclass(frozen=True)
class Replica:
    http_url: str
    grpc_target: str


class RetryingClient(threading.Thread):
    """Sends agent traces in one encoding until ``stop`` is set, starting each request at the next replica in
    turn; a request that fails goes to the next replica after the collector's retry hint, until acknowledged.
    The second half of each trace goes in the client's next request, so to another replica."""

    def __init__(self, encoding: str, replicas: Sequence[Replica], stop: threading.Event, seed: int) -> None:
        super().__init__(name=f"load-{encoding}-{seed}", daemon=True)
        self.encoding = encoding
        self.replicas = list(replicas)
        self.stop = stop
        self.rng = random.Random(seed)
        self.turn = seed
        self.traces: dict[str, Expected] = {}
        self.sent: list[tuple[str, str]] = []
        self.acknowledged: set[tuple[str, str]] = set()
        self.acknowledged_by: collections.Counter[int] = collections.Counter()  # requests, by replica index
        self.acknowledged_at: list[float] = []  # time.monotonic() of each acknowledgement
        self.resent = 0
        self.undelivered = 0
        self.hinted: collections.Counter[str] = collections.Counter()  # refusals that carried a retry hint
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                http = stack.enter_context(httpx.Client(timeout=15))
                channels = [stack.enter_context(grpc.insecure_channel(r.grpc_target)) for r in self.replicas]
                self.http, self.stubs = http, [trace_service_pb2_grpc.TraceServiceStub(c) for c in channels]
                self._send_until_stopped()
        except BaseException as error:  # reported by the test, which asserts ``error is None``
            self.error = error

    def _send_until_stopped(self) -> None:
        second_halves: list[ExportTraceServiceRequest] = []
        while True:
            stopping = self.stop.is_set()
            parts, second_halves = second_halves, []
            for _ in range(0 if stopping else self.rng.randint(1, 3)):
                trace_id, first, second, expected = agent_trace(self.rng)
                self.traces[trace_id] = expected
                service = f"agent-{self.encoding}"
                parts.append(trace_request(bytes.fromhex(trace_id), first, service=service))
                if second:
                    second_halves.append(trace_request(bytes.fromhex(trace_id), second, service=service))
            if not parts:
                return
            request = joined(parts)
            keys = [(s.trace_id.hex(), s.span_id.hex()) for r in request.resource_spans for s in r.scope_spans[0].spans]
            self.sent.extend(keys)
            self.turn += 1
            acknowledged_by = self._deliver(request, self.turn % len(self.replicas))
            if acknowledged_by is None:
                self.undelivered += 1
                continue
            self.acknowledged.update(keys)
            if self.rng.random() < RESEND_SHARE:  # as if the answer had been lost: the same request elsewhere
                self.resent += 1
                if self._deliver(request, (acknowledged_by + 1) % len(self.replicas)) is None:
                    self.undelivered += 1

    def _deliver(self, request: ExportTraceServiceRequest, first: int) -> int | None:
        """Send until a replica acknowledges; the index of the one that did, or None after ``GIVE_UP``."""
        deadline = time.monotonic() + GIVE_UP
        index = first
        while time.monotonic() < deadline:
            outcome, delay = self._send(request, index)
            self.outcomes[outcome] += 1
            if delay is None:
                if outcome in NOT_RETRIED:
                    return None
                self.acknowledged_by[index] += 1
                self.acknowledged_at.append(time.monotonic())
                return index
            time.sleep(delay)
            index = (index + 1) % len(self.replicas)
        return None

    def _send(self, request: ExportTraceServiceRequest, index: int) -> tuple[str, float | None]:
        """One attempt: its outcome, and how long to wait before the next (None: acknowledged, or not to retry)."""
        replica = self.replicas[index]
        if self.encoding == "grpc":
            try:
                answer = self.stubs[index].Export(request, timeout=15)
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]
                if code != grpc.StatusCode.UNAVAILABLE:
                    return f"grpc {code.name}", None
                hint = retry_delay(error)
                if hint is not None:
                    self.hinted["grpc UNAVAILABLE"] += 1
                return "grpc UNAVAILABLE", 0.02 if hint is None else hint
            return ("grpc partial" if answer.HasField("partial_success") else "grpc OK"), None
        json_encoded = self.encoding == "json"
        try:
            response = self.http.post(
                f"{replica.http_url}/v1/traces",
                content=as_json(request) if json_encoded else request.SerializeToString(),
                headers={"content-type": "application/json" if json_encoded else "application/x-protobuf"},
            )
        except httpx.HTTPError as error:  # refused, reset, timed out: the replica is gone or stuck
            return type(error).__name__, 0.02
        if response.status_code == 503:
            self.hinted["http 503"] += "Retry-After" in response.headers
            return "http 503", float(response.headers.get("Retry-After", 0.02))
        if response.status_code != 200:
            return f"http {response.status_code}", None
        partial = (
            "partialSuccess" in response.json()
            if json_encoded
            else ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
        )
        return ("http 200 partial" if partial else "http 200"), None


@contextlib.contextmanager
def loading(
    replicas: Sequence[Replica], clients_per_encoding: int = 2, first_seed: int = 0
) -> Iterator[list[RetryingClient]]:
    """Clients of every encoding sending to ``replicas`` for the duration of the block; on leaving it they
    send the halves of traces they still hold and stop, every request delivered or given up. Each client's
    seed (``first_seed`` on) makes its traces: clients of one test need seeds of their own."""
    stop = threading.Event()
    clients = [
        RetryingClient(encoding, replicas, stop, seed=first_seed + index * len(ENCODINGS) + number)
        for index in range(clients_per_encoding)
        for number, encoding in enumerate(ENCODINGS)
    ]
    with running(clients, stop, join_timeout=GIVE_UP + 20):
        yield clients


def replicas_of(daemons: Sequence[Daemon]) -> list[Replica]:
    return [Replica(daemon.http_url, daemon.grpc_target) for daemon in daemons]


def acknowledged(clients: Sequence[RetryingClient]) -> int:
    return sum(len(client.acknowledged_at) for client in clients)


def outcomes(clients: Sequence[RetryingClient]) -> collections.Counter[str]:
    return sum((client.outcomes for client in clients), start=collections.Counter())


def assert_every_request_delivered_and_stored_once(clients: Sequence[RetryingClient], dsn: str) -> None:
    """Every request was acknowledged in the end (nothing refused for good), and every span sent is stored
    exactly once: acknowledged spans lost, or a span stored twice, fail."""
    seen = outcomes(clients)
    assert not set(NOT_RETRIED) & set(seen), seen
    assert sum(client.undelivered for client in clients) == 0, seen
    sent = {key for client in clients for key in client.sent}
    assert sent == {key for client in clients for key in client.acknowledged}
    with psycopg.connect(dsn) as connection:
        copies = connection.execute("SELECT trace_id, span_id, count(*) FROM spans GROUP BY trace_id, span_id")
        stored = {(trace_id, span_id): count for trace_id, span_id, count in copies}
    assert {key: count for key, count in stored.items() if count != 1} == {}
    lost = sent - stored.keys()
    assert not lost, f"{len(lost)} of {len(sent)} acknowledged spans are not stored"
    assert stored.keys() == sent, "the database holds spans nobody sent"


def breaches_counted(daemons: Sequence[Daemon]) -> float:
    """``genai_collector_breaches_total`` summed over every rule and metric of each replica's ``/metrics``."""
    return sum(
        sample.value
        for daemon in daemons
        for family in text_string_to_metric_families(scrape(daemon))
        for sample in family.samples
        if sample.name == "genai_collector_breaches_total"
    )


def no_tracebacks(daemons: Sequence[Daemon]) -> None:
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr, daemon.stderr


ROLLUPS_AND_SPANS = """
SELECT t.trace_id, t.span_count, t.error_count, t.llm_calls, t.input_tokens, t.output_tokens, t.total_tokens,
       t.cost_usd, s.span_count, s.error_count, s.llm_calls, s.input_tokens, s.output_tokens, s.total_tokens,
       s.cost_usd
FROM traces t JOIN (
    SELECT trace_id, count(*) AS span_count, count(*) FILTER (WHERE status_code = 'error') AS error_count,
           count(*) FILTER (WHERE category = 'llm') AS llm_calls, sum(input_tokens) AS input_tokens,
           sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens, sum(cost_usd) AS cost_usd
    FROM spans GROUP BY trace_id
) s USING (trace_id)
"""


BREACHES = "SELECT trace_id, metric, count(*) FROM metric_snapshots WHERE breached = 1 GROUP BY trace_id, metric"


def test_three_replicas_one_killed_mid_load_store_each_span_once_and_count_each_breach_once(
    postgres_cluster: Cluster, tmp_path: Path
) -> None:
    config = config_file(tmp_path)
    with postgres_cluster.database("replicas", url=True) as url:
        with contextlib.ExitStack() as stack:
            daemons = [stack.enter_context(Daemon(url, "--config", config)) for _ in range(3)]
            for daemon in daemons:  # started together: they migrate one database at once
                daemon.wait_listening()
            victim, survivors = daemons[0], daemons[1:]
            load_started = time.time()
            with loading(replicas_of(daemons)) as clients:
                wait_until(
                    lambda: (
                        all(sum(c.acknowledged_by[i] for c in clients) >= 20 for i in range(3))
                        and time.time() - load_started > 1.0
                    ),
                    timeout=SETTLE_AFTER - 1.5,
                    what="every replica to acknowledge 20 requests",
                )
                victim.process.send_signal(signal.SIGKILL)
                assert victim.process.wait(timeout=10) == -signal.SIGKILL
                killed_after = time.time() - load_started
                with psycopg.connect(url) as connection:  # the victim settled nothing: its breach count was 0
                    row = connection.execute("SELECT count(*) FROM metric_snapshots").fetchone()
                assert killed_after < SETTLE_AFTER and row == (0,), f"killed {killed_after:.1f} s in, {row} snapshots"
                at_kill = acknowledged(clients)
                wait_until(
                    lambda: acknowledged(clients) > at_kill + 200, timeout=20, what="the survivors to take the load"
                )
            traces = {trace_id: expected for client in clients for trace_id, expected in client.traces.items()}

            assert_every_request_delivered_and_stored_once(clients, url)
            seen = outcomes(clients)
            failed = sum(count for outcome, count in seen.items() if outcome not in ("http 200", "grpc OK"))
            assert failed and seen["http 200"] and seen["grpc OK"], seen  # the kill was felt, and retried elsewhere
            assert sum(client.resent for client in clients) >= 20

            with psycopg.connect(url) as connection:
                unsettled = "SELECT count(*) FILTER (WHERE settled_at_unix_nano IS NULL), count(*) FROM traces"
                wait_until(
                    lambda: connection.execute(unsettled).fetchone() == (0, len(traces)),
                    timeout=SETTLE_AFTER + 20,
                    what=f"{len(traces)} traces settled",
                )
                rollups = connection.execute(ROLLUPS_AND_SPANS).fetchall()
                breached = connection.execute(BREACHES).fetchall()
            assert len(rollups) == len(traces)
            for trace_id, *rollup in rollups:
                expected = traces[trace_id]
                sums = (expected.span_count, expected.error_count, expected.llm_calls, expected.input_tokens)
                sums += (expected.output_tokens, expected.input_tokens + expected.output_tokens)
                assert tuple(rollup[:6]) == sums == tuple(rollup[7:13]), trace_id
                assert rollup[6] == pytest.approx(rollup[13]) and rollup[6] > 0, trace_id
            assert {count for _, _, count in breached} == {1}
            expected_breaches = set().union(*(expected.breaches(trace_id) for trace_id, expected in traces.items()))
            assert {(trace_id, metric) for trace_id, metric, _ in breached} == expected_breaches
            assert len(expected_breaches) >= 20, "too few breaches to prove anything"
            # counted after each settling commit, on the replica that settled: each once, across the survivors
            wait_until(lambda: breaches_counted(survivors) >= len(breached), timeout=5, what="the breach counters")
            assert breaches_counted(survivors) == len(breached)
            no_tracebacks(survivors)
        assert deadlocks(url) == 0  # read once the replicas' connections are gone


OUTAGE = 5.0  # seconds PostgreSQL stays stopped


def test_postgresql_stopped_under_load_loses_nothing_acknowledged_and_the_replicas_recover(tmp_path: Path) -> None:
    """Two replicas under load and an idle one; PostgreSQL stopped (``pg_ctl stop -m fast``) for 5 s, then
    started. Meanwhile clients are refused with retry hints and every replica says unready, the idle one too;
    afterwards each is ready again without a restart and acknowledges new requests, and the database holds every
    span acknowledged, before, during (none) and after the outage, once."""
    binaries = server_binaries()
    if binaries is None:
        missing("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin; Debian's postgresql)")
    cluster = Cluster(binaries).start()  # its own, to stop without disturbing the session's
    try:
        with contextlib.ExitStack() as stack:
            daemons = [stack.enter_context(Daemon(cluster.url(), "--config", config_file(tmp_path))) for _ in range(3)]
            for daemon in daemons:
                daemon.wait_listening()
            loaded, idle = daemons[:2], daemons[2]
            with loading(replicas_of(loaded), clients_per_encoding=1) as clients:
                wait_until(lambda: acknowledged(clients) >= 30, timeout=20, what="30 requests acknowledged")
                cluster.stop()
                stopped_at = time.monotonic()
                unready: set[int] = set()  # the replicas seen unready meanwhile
                while time.monotonic() - stopped_at < OUTAGE:
                    unready.update(index for index, daemon in enumerate(daemons) if daemon.readyz() == 503)
                    time.sleep(0.1)
                hinted_during_outage = sum(sum(client.hinted.values()) for client in clients)
                cluster.resume()
                resumed_at = time.monotonic()
                wait_until(
                    lambda: all(daemon.readyz() == 200 for daemon in daemons), timeout=15, what="every replica ready"
                )
                recovered_in = time.monotonic() - resumed_at

                def after_recovery(client: RetryingClient) -> int:
                    return sum(at > resumed_at for at in client.acknowledged_at)

                wait_until(
                    lambda: all(after_recovery(client) >= 10 for client in clients),
                    timeout=GIVE_UP,
                    what="every client's requests acknowledged again",
                )
            with loading(replicas_of([idle]), clients_per_encoding=1, first_seed=len(clients)) as late_clients:
                wait_until(lambda: acknowledged(late_clients) >= 3, timeout=15, what="the idle replica to acknowledge")

            assert unready == {0, 1, 2}, f"only replicas {unready} said unready while PostgreSQL was down"
            assert hinted_during_outage, outcomes(clients)
            assert_every_request_delivered_and_stored_once([*clients, *late_clients], cluster.url())
            # Every refusal carried its retry hint. Which transports were refused depends on timing: a request that
            # waits in the writer's queue through the whole outage is committed, and acknowledged, after it.
            hinted = sum((client.hinted for client in clients), start=collections.Counter())
            seen = outcomes(clients)
            assert hinted["http 503"] == seen["http 503"], seen
            assert hinted["grpc UNAVAILABLE"] == seen["grpc UNAVAILABLE"], seen
            assert recovered_in < 10, f"ready {recovered_in:.1f} s after PostgreSQL came back"
            no_tracebacks(daemons)
    finally:
        cluster.remove()
