"""Ingest worker processes as an operator meets them: a worker killed under load, the main process killed,
a graceful stop while every worker holds a request in flight. Real daemons on port 0, real clients."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collector.config.ingest import Cpus, describe, worker_processes
from tests.helpers import (
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

WORKERS = ("--ingest-workers", "2")


def workers_of(daemon: Daemon) -> set[int]:
    """The pids of the daemon's live child processes."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if int(parent) == daemon.process.pid and state != "Z":
            children.add(int(entry.name))
    return children


def running_workers(daemon: Daemon, count: int = 2) -> set[int]:
    return wait_until(lambda: len(pids := workers_of(daemon)) == count and pids, 30, f"{count} ingest workers")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def accepted_spans(daemon: Daemon) -> float:
    exposition = scrape(daemon)
    return sum(
        metric_value(exposition, "genai_collector_receiver_accepted_spans_total", transport=transport)
        for transport in ("http", "grpc")
    )


def test_a_worker_killed_under_load_loses_nothing_acknowledged_and_is_restarted(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    with Daemon(db, *WORKERS) as daemon:
        daemon.wait_listening()
        workers = running_workers(daemon)
        with load(daemon, per_transport=3) as clients:
            wait_until(lambda: acknowledged_by(clients) >= 300, 30, "300 acknowledged spans")
            before = accepted_spans(daemon)
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            acknowledged_at_kill = acknowledged_by(clients)
            daemon.wait_for_line(re.compile(rf"ingest worker \d \(pid {victim}\) exited with code -9; restarting"), 10)
            replacement = running_workers(daemon) - workers
            assert len(replacement) == 1 and victim not in workers_of(daemon)
            wait_until(
                lambda: acknowledged_by(clients) >= acknowledged_at_kill + 300, 30, "300 more spans after the kill"
            )
        after = accepted_spans(daemon)
        acknowledged_after_kill = acknowledged_by(clients) - acknowledged_at_kill
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=20) == 0, daemon.stderr

    # The totals survive the worker: what it had shipped stays, and every other worker's acknowledgements add up
    # (a request answered by the victim just before it died may have missed its last shipment: one per client).
    in_flight_margin = len(clients) * clients[0].spans_per_request
    assert after - before >= acknowledged_after_kill - in_flight_margin
    acknowledged = {key for client in clients for key in client.acknowledged}
    stored = stored_span_keys(db)
    assert acknowledged - stored == set(), "acknowledged spans lost with the worker"
    assert stored <= {key for client in clients for key in client.sent}
    assert not {"http 200 partial", "grpc partial", "http 500", "grpc INTERNAL"} & set(outcomes_of(clients))
    assert " ERROR " not in daemon.stderr and "Traceback" not in daemon.stderr, daemon.stderr


def test_the_workers_die_with_a_killed_main_process(tmp_path: Path) -> None:
    with Daemon(tmp_path / "collector.db", *WORKERS) as daemon:
        daemon.wait_listening()
        workers = running_workers(daemon)
        daemon.process.send_signal(signal.SIGKILL)
        assert daemon.process.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: not any(alive(pid) for pid in workers), 10, "the workers to die with the main process")
        wait_until(lambda: refused(daemon.http_url), 10, "nobody to hold the OTLP/HTTP port any more")


def refused(url: str) -> bool:
    try:
        httpx.post(f"{url}/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"}, timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:  # taken before the socket closed
        return False
    return False


def server_side_owners(pids: set[int], port: int) -> dict[int, int]:
    """For each client port of a connection to ``port``: the pid of the worker holding the accepted socket."""
    owner_of_inode = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owner_of_inode[target[8:-1]] = pid
    owners = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local_port == port and fields[9] in owner_of_inode:
            owners[remote_port] = owner_of_inode[fields[9]]
    return owners


def test_graceful_stop_drains_a_request_in_flight_on_every_worker(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    with Daemon(db, *WORKERS, "--shutdown-timeout", "10s") as daemon:
        daemon.wait_listening()
        workers = running_workers(daemon)
        half_sent: dict[int, HalfSentRequest] = {}
        holders: set[int] = set()
        deadline = time.monotonic() + 30
        while holders != workers:  # the workers share the connections (collector.workers.balance)
            assert time.monotonic() < deadline, f"connections never reached every worker: {holders}"
            request = HalfSentRequest(daemon.ports["http"], otlp_request(2))
            half_sent[request.client_port] = request
            owners = wait_until(
                lambda: (
                    (found := server_side_owners(workers, daemon.ports["http"])).keys() >= half_sent.keys() and found
                ),
                10,
                "the workers to accept the connections",
            )
            holders = {owners[port] for port in half_sent}
        barrier = drain_barrier(daemon)

        daemon.process.send_signal(signal.SIGTERM)
        wait_until(lambda: daemon.readyz() == 503, 10, "/readyz to turn 503 during the drain")
        assert all(alive(pid) for pid in workers), "the workers wait for their requests in flight"
        answers = [request.finish() for request in half_sent.values()]
        assert answers == ["HTTP/1.1 200 OK"] * len(half_sent)
        for request in half_sent.values():
            request.close()
        assert daemon.process.wait(timeout=15) == 0, daemon.stderr

    assert not any(alive(pid) for pid in workers)
    expected = {key for request in half_sent.values() for key in request.keys} | set(barrier)
    assert stored_span_keys(db) == expected
    assert " ERROR " not in daemon.stderr and "Traceback" not in daemon.stderr, daemon.stderr


def test_the_default_runs_a_worker_per_usable_cpu(tmp_path: Path) -> None:
    """No --ingest-workers, no environment, no file: the daemon's default (``auto``) as an operator meets it. It
    says at start-up how many workers it runs and why, /metrics says how many serve, a span from the SDK's
    exporter is stored, and SIGTERM stops every process cleanly."""
    cpus = Cpus.of_this_process()
    expected = worker_processes("auto", cpus)
    db = tmp_path / "collector.db"
    with Daemon(db, pin_workers=False) as daemon:
        daemon.wait_listening()
        line = daemon.wait_for_line(re.compile(r"ingest: .*"), 10).group(0)
        assert line == f"ingest: {describe('auto', cpus)}"
        if cpus.usable > 1:
            assert expected > 1, line  # a machine with several CPUs runs several workers by default
        workers = running_workers(daemon, expected) if expected else set()
        assert metric_value(scrape(daemon), "genai_collector_ingest_workers") == expected

        provider = TracerProvider(resource=Resource.create({"service.name": "default-mode"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{daemon.http_url}/v1/traces")))
        with provider.get_tracer("tests.workers").start_as_current_span("chat gpt-4o") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})
        provider.shutdown()  # SimpleSpanProcessor: exported, and so acknowledged after its commit, by now

        context = span.get_span_context()
        trace_id, span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=20) == 0, daemon.stderr
    assert stored_span_keys(db) == {(trace_id, span_id)}
    assert not any(alive(pid) for pid in workers)
    assert " ERROR " not in daemon.stderr and "Traceback" not in daemon.stderr, daemon.stderr


def test_connections_made_together_are_shared_among_the_workers(tmp_path: Path) -> None:
    """Eight clients connecting at once (a fleet's exporters restarted together): asyncio takes every waiting
    connection each time it is woken, so the first worker to run used to take them all."""
    with Daemon(tmp_path / "collector.db", *WORKERS) as daemon:
        daemon.wait_listening()
        workers = running_workers(daemon)
        port = daemon.ports["http"]
        for pid in workers:  # every connection waits in the backlog before either worker runs again
            os.kill(pid, signal.SIGSTOP)
        try:
            clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        try:
            body = otlp_request(1).SerializeToString()
            head = (
                f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            for client in clients:
                client.sendall(head + body)
            for client in clients:
                assert client.recv(65536).startswith(b"HTTP/1.1 200 OK")
            owners = server_side_owners(workers, port)
            held = sorted(Counter(owners[client.getsockname()[1]] for client in clients).values())
        finally:
            for client in clients:
                client.close()
    assert len(held) == 2 and held[1] - held[0] <= 2, f"connections per worker: {held}"
