"""Hostile-input benchmark for genai-collector (issue 9): what one bad client costs everyone else.

    .venv/bin/python bench/hostile.py                 # requests, then settle
    .venv/bin/python bench/hostile.py requests        # /healthz p50/p99 and peak RSS during each hostile request
    .venv/bin/python bench/hostile.py settle -d 30    # settled traces/s against ingested traces/s at max rate
    .venv/bin/python bench/hostile.py --smoke         # a few seconds, small sizes: the code still runs

Each scenario starts its own `genai-collector serve` (default settings unless said) on a fresh database,
with the shared bench modules (bench/__init__.py). See bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import apsw

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.daemon import Daemon, proc_memory_kib
from bench.drivers import PROTOCOLS, Load, LoadPlan
from bench.report import machine, percentile
from bench.traces import build_templates

SCENARIOS = ("requests", "settle")
PAUSE = 0.02  # between two /healthz probes


# --- hostile requests, built as bytes (650,000 spans through protobuf objects would take minutes) ---


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    length = len(payload)
    varint = bytearray()
    while length > 0x7F:
        varint.append(length & 0x7F | 0x80)
        length >>= 7
    varint.append(length)
    return bytes([number << 3 | 2]) + bytes(varint) + payload


def _request(spans: list[bytes], service: str = "hostile") -> bytes:
    """ExportTraceServiceRequest{resource_spans{resource{service.name}, scope_spans{spans}}} of encoded spans."""
    service_name = _field(1, b"service.name") + _field(2, _field(1, service.encode()))
    resource = _field(1, _field(1, service_name))
    scope_spans = _field(2, b"".join(_field(2, span) for span in spans))
    return _field(1, resource + scope_spans)


def _span(trace_id: bytes, span_id: bytes, attributes: dict[str, str] | None = None) -> bytes:
    """trace_id, span_id, name, start and end times (fixed64) and string attributes."""
    now = time.time_ns()
    encoded = _field(1, trace_id) + _field(2, span_id) + _field(5, b"hostile")
    encoded += bytes([7 << 3 | 1]) + now.to_bytes(8, "little")
    encoded += bytes([8 << 3 | 1]) + (now + 10**6).to_bytes(8, "little")
    for key, value in (attributes or {}).items():
        encoded += _field(9, _field(1, key.encode()) + _field(2, _field(1, value.encode())))
    return encoded


def emails_request(addresses: int) -> bytes:
    """One LLM span whose prompt holds ``addresses`` e-mail addresses (40,000 in 280 KB froze the loop for 55 s)."""
    prompt = " ".join(f"u{index}@x.io" for index in range(addresses))
    attributes = {"gen_ai.request.model": "gpt-4o", "gen_ai.prompt": prompt}
    return _request([_span(os.urandom(16), os.urandom(8), attributes)])


def tiny_spans_request(count: int) -> bytes:
    """``count`` spans with ids only (650,000 fit in 18.6 MiB: 1.3 GiB of RSS before the span cap)."""
    trace_id = os.urandom(16)
    return _request([_field(1, trace_id) + _field(2, os.urandom(8)) for _ in range(count)])


def largest_request(spans: int, size: int) -> bytes:
    """The largest request the defaults admit: ``spans`` spans (max_spans_per_request) in ``size`` bytes
    (max_request_size), each with a prompt that fills its share."""
    trace_id = os.urandom(16)
    words = "the customer asked about the refund policy and the shipping delay of order ".split()
    rng = random.Random(9)
    per_span = size // spans - 120
    prompt = " ".join(rng.choice(words) for _ in range(per_span // 5))[:per_span]
    attributes = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.prompt": prompt}
    return _request([_span(trace_id, os.urandom(8), attributes) for _ in range(spans)])


# --- measuring one hostile request -----------------------------------------------------------


class HealthProbe(threading.Thread):
    """GET /healthz back to back (on one keep-alive connection) until stopped; each answer's latency."""

    def __init__(self, port: int) -> None:
        super().__init__(name="healthz-probe", daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self._done = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        while not self._done.is_set():
            started = time.monotonic()
            try:
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.latencies.append(time.monotonic() - started)
            self.failures += not ok
            self._done.wait(PAUSE)
        connection.close()

    def stop(self) -> None:
        self._done.set()
        self.join()


@dataclass
class RequestRun:
    scenario: str
    body_mb: float
    status: int | None
    answer: str
    seconds: float
    healthz_probes: int
    healthz_failures: int
    healthz_ms: dict[str, float | None]
    rss_before_mb: float | None
    peak_rss_mb: float | None
    peak_rss_over_body: float | None


def post(port: int, body: bytes, timeout: float) -> tuple[int | None, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        response = connection.getresponse()
        payload = response.read()
        return response.status, payload[:200].decode("utf-8", "replace") if response.status != 200 else "ok"
    except (OSError, http.client.HTTPException) as error:
        return None, f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def measure_request(scenario: str, body: bytes, args: argparse.Namespace, daemon_args: Sequence[str]) -> RequestRun:
    with tempfile.TemporaryDirectory(prefix="hostile-", dir=args.db_dir) as directory:
        daemon = Daemon(Path(directory) / "collector.db", [*daemon_args, *args.daemon_args])
        try:
            daemon.wait_ready()
            before = proc_memory_kib(daemon.pid)
            probe = HealthProbe(daemon.ports["admin"])
            probe.start()
            time.sleep(0.3)  # probes on a quiet daemon first: the connection is open, the loop warm
            quiet = len(probe.latencies)
            started = time.monotonic()
            status, answer = post(daemon.ports["http"], body, args.timeout)
            seconds = time.monotonic() - started
            probe.stop()
            peak = proc_memory_kib(daemon.pid)
        finally:
            daemon.stop()
    during = sorted(probe.latencies[quiet:])
    peak_mb = peak["VmHWM"] / 1024
    return RequestRun(
        scenario=scenario,
        body_mb=round(len(body) / 2**20, 2),
        status=status,
        answer=answer,
        seconds=round(seconds, 2),
        healthz_probes=len(during),
        healthz_failures=probe.failures,
        healthz_ms={
            name: None if (value := percentile(during, share)) is None else round(value * 1000, 1)
            for name, share in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        },
        rss_before_mb=round(before["VmRSS"] / 1024, 1),
        peak_rss_mb=round(peak_mb, 1),
        peak_rss_over_body=round((peak_mb - before["VmRSS"] / 1024) / (len(body) / 2**20), 1),
    )


def hostile_requests(args: argparse.Namespace) -> list[RequestRun]:
    scale = 0.05 if args.smoke else 1.0
    size = int(args.max_request_size * scale)
    scenarios: list[tuple[str, Callable[[], bytes], list[str]]] = [
        (
            f"emails ({int(args.emails * scale):,} addresses in one prompt)",
            lambda: emails_request(int(args.emails * scale)),
            [],
        ),
        (
            f"tiny spans ({int(args.tiny_spans * scale):,} in one request)",
            lambda: tiny_spans_request(int(args.tiny_spans * scale)),
            [],
        ),
        (
            f"largest admitted ({args.max_spans:,} spans, {size / 2**20:.1f} MiB)",
            lambda: largest_request(args.max_spans, size),
            [],
        ),
    ]
    if args.smoke:  # the span cap must still refuse the tiny-spans request at this scale
        cap = str(int(args.tiny_spans * scale) // 2)
        scenarios[1] = (scenarios[1][0], scenarios[1][1], ["--max-spans-per-request", cap])
    runs = []
    for name, build, daemon_args in scenarios:
        body = build()
        runs.append(measure_request(name, body, args, daemon_args))
        print(f"  {name}: {json.dumps(asdict(runs[-1]))}", file=sys.stderr)
    return runs


# --- settling against ingest at the maximum rate ----------------------------------------------


@dataclass
class SettleRun:
    duration_s: float
    protocol: str
    ingested_traces_per_s: float
    settled_traces_per_s: float
    backlog_at_end: int
    settled_within_s_after_load: float | None
    oldest_unsettled_age_s_at_end: float | None
    samples: list[dict[str, float]] = field(default_factory=list)


def _traces(db: Path) -> tuple[int, int]:
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        connection.set_busy_timeout(2000)
        return connection.execute("SELECT count(*), count(settled_at_unix_nano) FROM traces").fetchone()  # type: ignore[return-value]
    finally:
        connection.close()


def _gauge(port: int, name: str) -> float | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        for line in connection.getresponse().read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return None


def settle_at_max(args: argparse.Namespace) -> SettleRun:
    """Send at the maximum rate for ``--duration`` s with settle_after 1s; sample the traces table every second."""
    duration = 3.0 if args.smoke else args.duration
    with tempfile.TemporaryDirectory(prefix="hostile-settle-", dir=args.db_dir) as directory:
        config = Path(directory) / "collector.yaml"
        config.write_text("snapshots:\n  settle_after: 1s\n  interval: 1s\n")
        db = Path(directory) / "collector.db"
        daemon = Daemon(db, ["--config", str(config), *args.daemon_args])
        try:
            daemon.wait_ready()
            templates = build_templates(8 if args.smoke else 32, 100, args.protocol)
            start_at = time.monotonic() + 0.5
            plan = LoadPlan(
                args.protocol,
                (daemon.targets(args.protocol),),
                args.clients,
                1,
                start_at,
                start_at + duration,
                None,
                30.0,
                random.getrandbits(16),
            )
            load = Load(plan, templates)
            samples = []
            while time.monotonic() < start_at + duration:
                time.sleep(1.0)
                traces, settled = _traces(db)
                samples.append({"t": round(time.monotonic() - start_at, 1), "traces": traces, "settled": settled})
            load.results()
            traces, settled_at_end = _traces(db)
            age = _gauge(daemon.ports["admin"], "genai_collector_oldest_unsettled_trace_age_seconds")
            ended = time.monotonic()
            caught_up = None
            while time.monotonic() - ended < 30:
                if _traces(db)[1] == traces:
                    caught_up = round(time.monotonic() - ended, 1)
                    break
                time.sleep(0.2)
        finally:
            daemon.stop()
    first = next((s for s in samples if s["t"] >= 1.5), samples[0])  # settling starts settle_after in
    last = samples[-1]
    span = max(0.1, last["t"] - first["t"])
    return SettleRun(
        duration_s=duration,
        protocol=args.protocol,
        ingested_traces_per_s=round((last["traces"] - first["traces"]) / span, 1),
        settled_traces_per_s=round((last["settled"] - first["settled"]) / span, 1),
        backlog_at_end=traces - settled_at_end,
        settled_within_s_after_load=caught_up,
        oldest_unsettled_age_s_at_end=age,
        samples=samples,
    )


# --- report ----------------------------------------------------------------------------------


def table(requests: list[RequestRun], settle: SettleRun | None) -> str:
    lines = []
    if requests:
        lines.append(
            f"{'hostile request':<52} {'MiB':>6} {'answer':>6} {'s':>7} {'healthz p50':>11} {'p99 ms':>8} "
            f"{'max ms':>8} {'peak RSS MB':>11} {'RSS/body':>8}"
        )
        for run in requests:
            lines.append(
                f"{run.scenario:<52} {run.body_mb:>6} {run.status or '-':>6} {run.seconds:>7} "
                f"{run.healthz_ms['p50'] or '-':>11} {run.healthz_ms['p99'] or '-':>8} "
                f"{run.healthz_ms['max'] or '-':>8} "
                f"{run.peak_rss_mb or '-':>11} {run.peak_rss_over_body or '-':>8}"
            )
    if settle:
        lines.append(
            f"settling at max ingest ({settle.protocol}, {settle.duration_s:g} s): ingested "
            f"{settle.ingested_traces_per_s:,.0f} traces/s, settled {settle.settled_traces_per_s:,.0f} traces/s, "
            f"backlog at end {settle.backlog_at_end:,}, "
            f"all settled {settle.settled_within_s_after_load} s after the load, "
            f"oldest unsettled age at end {settle.oldest_unsettled_age_s_at_end} s"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    daemon_args: list[str] = []
    if "--" in argv:
        daemon_args, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    parser = argparse.ArgumentParser(prog="bench/hostile.py", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", nargs="?", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--smoke", action="store_true", help="small sizes and 3 s: the code runs, figures mean little")
    parser.add_argument("--emails", type=int, default=40_000, help="addresses in the e-mail prompt (default 40,000)")
    parser.add_argument("--tiny-spans", type=int, default=650_000, help="spans in the tiny-spans request (650,000)")
    parser.add_argument(
        "--max-spans", type=int, default=10_000, help="spans of the largest admitted request (the default cap)"
    )
    parser.add_argument("--max-request-size", type=int, default=20 * 2**20 - 4096, help="its bytes (just under 20 MiB)")
    parser.add_argument("-d", "--duration", type=float, default=20.0, help="seconds of max-rate ingest for settle (20)")
    parser.add_argument("-p", "--protocol", choices=PROTOCOLS, default="http-protobuf")
    parser.add_argument("-c", "--clients", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one hostile request may take")
    parser.add_argument("--db-dir", type=Path, default=None, help="where the temporary databases go")
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = parser.parse_args(argv)
    args.daemon_args = daemon_args
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    requests = hostile_requests(args) if args.scenario in ("requests", "all") else []
    settle = settle_at_max(args) if args.scenario in ("settle", "all") else None
    print(table(requests, settle))
    if args.json:
        report = {
            "machine": machine(),
            "smoke": args.smoke,
            "daemon_args": args.daemon_args,
            "requests": [asdict(run) for run in requests],
            "settle": asdict(settle) if settle else None,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
