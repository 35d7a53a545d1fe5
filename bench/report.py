"""The figures of a run (``Run``), as JSON and as the table the benchmarks print, and the machine they ran on."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.drivers import OK, PARTIAL, REFUSED


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of an ordered sequence."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def percentiles_ms(ordered: Sequence[float]) -> dict[str, float | None]:
    return {
        name: None if (value := percentile(ordered, share)) is None else round(value * 1000, 2)
        for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    }


@dataclass
class Run:
    """The figures of one measured window, as printed and as written to JSON."""

    protocol: str
    phase: str
    duration_s: float
    clients: int
    spans_per_request: int
    offered_spans_per_s: float | None  # open-loop runs: the rate asked for
    sent_spans_per_s: float | None  # open-loop runs: what the clients managed to send (less when all were waiting)
    spans_per_s: float  # acknowledged spans per second in the window
    requests: int
    latency_ms: dict[str, float | None]
    latency_from_schedule_ms: dict[str, float | None] | None
    late_requests: int | None  # open-loop runs: requests sent more than 10 ms after they were due
    refused: int
    refused_without_hint: int
    errors: int
    outcomes: dict[str, int]
    daemon_cpu_s_per_10k_spans: float | None
    # the main process alone, when the collector has ingest workers (its writer, rollups, metrics and hand-off)
    main_cpu_s_per_10k_spans: float | None
    daemon_peak_rss_mb: float | None
    daemon_rss_mb: dict[str, float] | None  # at the window's start, its end, and the highest sample
    client_cpu_s_per_10k_spans: float | None
    host_cpu_busy_pct: float  # the whole machine, every process
    other_cpu_pct: float | None  # share of the machine busy with neither the collector, its database nor the clients
    acknowledged_spans: int  # every acknowledged span of the run, warm-up included
    unknown_outcome_spans: int  # timeouts and connection errors: stored or not, nobody knows
    database_cpu_s_per_10k_spans: float | None = None  # a database server's processes (PostgreSQL), when measured
    # the ingest worker processes the collector ran with (0: the main process received), as its start-up log says
    ingest_workers: int | None = None
    notes: list[str] = field(default_factory=list)
    slowest: list[dict[str, float]] = field(
        default_factory=list
    )  # the slowest requests, and when (s into the window) they ended
    queries_ms: dict[str, dict[str, float | None]] | None = None
    storage: dict[str, Any] | None = None  # the database after the session: bytes per span (bench/storage.py)
    stored_spans: int | None = None
    stored_check: str = "not checked"
    # Issue 18's yardstick (bench/measure.py ``reference_rate``): a naive single-core Python loop's spans/s on the
    # same requests, run just before and just after the window (``reference_samples``); their mean, the loop's
    # mean share of a core, and spans_per_s over the mean.
    reference_spans_per_s: float | None = None
    reference_core_share: float | None = None
    ratio_to_reference: float | None = None
    reference_samples: list[dict[str, float]] | None = None


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "collector_commit": commit,
    }


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(runs: list[Run]) -> str:
    headers = (
        "protocol",
        "phase",
        "workers",
        "spans/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "refused",
        "errors",
        "peak RSS MB",
        "CPU s/10k",
        "reference/s",
        "ratio",
        "stored = acked",
    )
    rows = [
        (
            run.protocol,
            run.phase + (f" @{run.offered_spans_per_s:,.0f}/s" if run.offered_spans_per_s else ""),
            _fmt(run.ingest_workers),
            _fmt(run.spans_per_s),
            _fmt(run.latency_ms["p50"], 1),
            _fmt(run.latency_ms["p95"], 1),
            _fmt(run.latency_ms["p99"], 1),
            _fmt(run.refused) + (f" (+{run.refused_without_hint} no hint)" if run.refused_without_hint else ""),
            _fmt(run.errors),
            _fmt(run.daemon_peak_rss_mb, 1),
            _fmt(run.daemon_cpu_s_per_10k_spans, 2),
            _fmt(run.reference_spans_per_s),
            _fmt(run.ratio_to_reference, 3),
            run.stored_check,
        )
        for run in runs
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    for run in runs:
        details = []
        if run.latency_from_schedule_ms:
            details.append(
                f"latency from the schedule p50/p95/p99 {run.latency_from_schedule_ms['p50']}/"
                f"{run.latency_from_schedule_ms['p95']}/{run.latency_from_schedule_ms['p99']} ms"
            )
        if run.daemon_rss_mb:
            details.append(
                f"RSS during the window {run.daemon_rss_mb['start']} -> {run.daemon_rss_mb['end']} MB "
                f"(max {run.daemon_rss_mb['max']})"
            )
        if run.storage and run.storage.get("bytes_per_span"):
            details.append(
                f"database {run.storage['database_bytes'] / 2**20:,.1f} MiB for {run.storage['spans']:,} spans: "
                f"{run.storage['bytes_per_span']:,.0f} bytes per span"
                + (
                    f" ({run.storage['used_bytes_per_span']:,.0f} in pages in use)"
                    if run.storage.get("used_bytes_per_span")
                    else ""
                )
            )
        if run.main_cpu_s_per_10k_spans is not None:
            details.append(f"main process CPU {run.main_cpu_s_per_10k_spans:.2f} s/10k spans (workers: the rest)")
        if run.database_cpu_s_per_10k_spans is not None:
            details.append(f"PostgreSQL CPU {run.database_cpu_s_per_10k_spans:.2f} s/10k spans")
        if run.slowest:
            details.append("slowest " + ", ".join(f"{r['ms']:,.0f} ms at {r['at_s']} s" for r in run.slowest))
        details.append(
            f"client CPU {_fmt(run.client_cpu_s_per_10k_spans, 2)} s/10k spans, host CPU busy {run.host_cpu_busy_pct}%"
            + (f" ({run.other_cpu_pct}% by other processes)" if run.other_cpu_pct is not None else "")
        )
        if run.reference_core_share is not None:
            samples = " and ".join(f"{sample['spans_per_s']:,.0f}" for sample in run.reference_samples or ())
            details.append(
                f"reference loop {samples} spans/s before and after the window, "
                f"{run.reference_core_share:.0%} of a core"
            )
        if run.other_cpu_pct is not None and run.other_cpu_pct > 10:
            run.notes.append(f"other processes used {run.other_cpu_pct}% of the machine: the figures are disturbed")
        for name, timing in (run.queries_ms or {}).items():
            details.append(
                f"{name}: p50 {timing['p50']} ms, p95 {timing['p95']} ms, max {timing['max']} ms "
                f"({timing['count']} runs)"
            )
        other = {k: v for k, v in run.outcomes.items() if k not in (OK, PARTIAL, REFUSED)}
        if other:
            details.append("other outcomes: " + ", ".join(f"{k} x{v}" for k, v in other.items()))
        details.extend(run.notes)
        lines.append(f"{run.protocol} {run.phase}: " + "; ".join(details))
    return "\n".join(lines)
