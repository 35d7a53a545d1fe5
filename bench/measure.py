"""One measured run: the load against a target for a warm-up and a window, with the collector's CPU and memory."""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.daemon import CLOCK_TICKS, RssSampler, host_cpu_ticks, proc_cpu_seconds, proc_memory_kib
from bench.drivers import OK, PARTIAL, REFUSED, REFUSED_NO_HINT, TIMEOUT, Load, LoadPlan
from bench.report import Run, percentiles_ms
from bench.traces import Template


def _reference_value(value: Any) -> Any:
    """An ``AnyValue`` as plain Python, the naive way: which field is set, then read it."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_reference_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _reference_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def reference_rate(bodies: list[bytes], seconds: float) -> dict[str, float]:
    """The yardstick of issue 18, measured in the same run as the collector: a naive single-core Python loop
    that parses each pre-encoded OTLP protobuf request, walks every span's attributes into a dict and encodes
    the span with ``json.dumps``. Spans per second of wall-clock time (what the machine gives one core now),
    and the loop's share of a core (below 1 when other processes took the core from it)."""
    spans = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        document = {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "name": span.name,
                            "start_time_unix_nano": span.start_time_unix_nano,
                            "end_time_unix_nano": span.end_time_unix_nano,
                            "attributes": {item.key: _reference_value(item.value) for item in span.attributes},
                        }
                        json.dumps(document)
                        spans += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"spans_per_s": round(spans / elapsed, 1), "core_share": round(cpu / elapsed, 3)}


def measure(
    protocol: str,
    phase: str,
    templates: list[Template],
    target: str | Sequence[str],
    pid: int | Sequence[int] | None,
    args: argparse.Namespace,
    *,
    clients: int,
    rate_spans: float | None = None,
    during: Callable[[float], None] | None = None,
    database_cpu: Callable[[], float | None] | None = None,
) -> Run:
    """Send for ``args.warmup + args.duration`` seconds; the figures of the last ``args.duration``.

    Several targets (collector replicas) share the clients in turn; ``pid`` is then each replica's process, whose
    CPU adds up (memory is the first one's). ``database_cpu`` reads a database server's CPU seconds (PostgreSQL's
    processes), reported apart and left out of the other processes' share."""
    targets = (target,) if isinstance(target, str) else tuple(target)
    pids = [] if pid is None else [pid] if isinstance(pid, int) else list(pid)
    pid = pids[0] if pids else None
    spans = templates[0].spans
    rate = rate_spans / spans if rate_spans else None
    start_at = time.monotonic() + 0.5  # let the worker processes start
    window_start = start_at + args.warmup
    stop_at = window_start + args.duration
    plan = LoadPlan(
        protocol,
        targets,
        clients,
        min(args.processes, clients),
        start_at,
        stop_at,
        rate,
        args.timeout,
        random.getrandbits(16),
        args.ca_file,
        args.api_key,
    )
    samples: dict[str, Any] = {}
    sampler = RssSampler(pid) if pid else None

    def sample_window() -> None:
        for label, at in (("start", window_start), ("end", stop_at)):
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            samples[f"host_{label}"] = host_cpu_ticks()
            if pid:
                with contextlib.suppress(OSError):
                    samples[f"cpu_{label}"] = sum(proc_cpu_seconds(each) for each in pids)
                    samples[f"main_cpu_{label}"] = sum(proc_cpu_seconds(each, children=False) for each in pids)
                    samples[f"rss_{label}"] = proc_memory_kib(pid)["VmRSS"]
            if database_cpu is not None:
                samples[f"database_{label}"] = database_cpu()

    load = Load(plan, templates)
    window = threading.Thread(target=sample_window, daemon=True)
    window.start()
    if sampler:
        sampler.start()
    watcher = threading.Thread(target=during, args=(stop_at,), daemon=True) if during else None
    if watcher:
        watcher.start()
    records, client_cpu = load.results()
    client_window_cpu = client_cpu * args.duration / (args.warmup + args.duration)  # the workers' CPU, pro rata
    window.join()
    if watcher:
        watcher.join()
    peak_kib = None
    if sampler:
        sampler.stop()
        with contextlib.suppress(OSError, KeyError):
            peak_kib = proc_memory_kib(pid)["VmHWM"]  # type: ignore[arg-type]

    in_window = [r for r in records if window_start <= r[2] < stop_at]
    acknowledged = [r for r in in_window if r[3] in (OK, PARTIAL)]
    latencies = sorted(r[2] - r[1] for r in acknowledged)
    outcomes = Counter(r[3] for r in in_window)
    acked_spans = sum(r[4] for r in acknowledged)
    busy = samples["host_end"][0] - samples["host_start"][0]
    total = samples["host_end"][1] - samples["host_start"][1]
    cpu = samples["cpu_end"] - samples["cpu_start"] if "cpu_end" in samples and "cpu_start" in samples else None
    main_cpu = samples["main_cpu_end"] - samples["main_cpu_start"] if "main_cpu_end" in samples else None
    database_start, database_end = samples.get("database_start"), samples.get("database_end")
    database = database_end - database_start if database_start is not None and database_end is not None else None
    rss = None
    if sampler and "rss_start" in samples:
        during_window = [kib for at, kib in sampler.samples if window_start <= at <= stop_at] or [samples["rss_start"]]
        rss = {
            "start": round(samples["rss_start"] / 1024, 1),
            "end": round(samples.get("rss_end", during_window[-1]) / 1024, 1),
            "max": round(max(during_window) / 1024, 1),
        }
    run = Run(
        protocol=protocol,
        phase=phase,
        duration_s=args.duration,
        clients=clients,
        spans_per_request=spans,
        offered_spans_per_s=round(rate_spans, 1) if rate_spans else None,
        sent_spans_per_s=(
            round(sum(r[5] for r in records if window_start <= r[1] < stop_at) / args.duration, 1) if rate else None
        ),
        spans_per_s=round(acked_spans / args.duration, 1),
        requests=len(in_window),
        latency_ms=percentiles_ms(latencies),
        latency_from_schedule_ms=percentiles_ms(sorted(r[2] - r[0] for r in acknowledged)) if rate else None,
        late_requests=sum(1 for r in in_window if r[1] - r[0] > 0.010) if rate else None,
        refused=outcomes[REFUSED],
        refused_without_hint=outcomes[REFUSED_NO_HINT],
        errors=sum(count for outcome, count in outcomes.items() if outcome not in (OK, PARTIAL, REFUSED)),
        outcomes=dict(outcomes),
        daemon_cpu_s_per_10k_spans=round(cpu / acked_spans * 10_000, 3) if cpu is not None and acked_spans else None,
        main_cpu_s_per_10k_spans=(  # only when the collector has ingest workers: else the main process is all
            round(main_cpu / acked_spans * 10_000, 3) if main_cpu not in (None, cpu) and acked_spans else None
        ),
        daemon_peak_rss_mb=round(peak_kib / 1024, 1) if peak_kib else None,
        daemon_rss_mb=rss,
        client_cpu_s_per_10k_spans=round(client_cpu / max(1, sum(r[4] for r in records)) * 10_000, 3),
        host_cpu_busy_pct=round(100 * busy / total, 1) if total else 0.0,
        other_cpu_pct=(
            round(100 * (busy - (cpu + client_window_cpu + (database or 0.0)) * CLOCK_TICKS) / total, 1)
            if total and cpu is not None
            else None
        ),
        database_cpu_s_per_10k_spans=round(database / acked_spans * 10_000, 3) if database and acked_spans else None,
        acknowledged_spans=sum(r[4] for r in records),
        unknown_outcome_spans=sum(r[5] for r in records if r[3] == TIMEOUT or r[3].startswith("connection error")),
        slowest=[
            {"ms": round((r[2] - r[1]) * 1000, 1), "at_s": round(r[2] - window_start, 2)}
            for r in sorted(acknowledged, key=lambda r: r[1] - r[2])[:3]
        ],
    )
    if outcomes[PARTIAL]:
        run.notes.append(f"{outcomes[PARTIAL]} requests were only partly accepted (partial_success)")
    if run.late_requests:
        run.notes.append(
            f"{run.late_requests} of {len(in_window)} requests left more than 10 ms late "
            "(every client was waiting for an answer; "
            f"sent {run.sent_spans_per_s:,.0f} of the {run.offered_spans_per_s:,.0f} spans/s asked)"
        )
    return run
