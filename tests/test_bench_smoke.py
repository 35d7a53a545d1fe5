"""The ingest benchmark keeps working: its CI smoke (every protocol, a few seconds, a small load)
stores exactly what the collector acknowledged. A speed is never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from collector.config.ingest import Cpus, worker_processes
from tests.helpers import REPO, missing
from tests.postgres import server_binaries

PROTOCOLS = {"http-protobuf", "http-json", "grpc"}


def run_bench(script: str, *arguments: str, tmp_path: Path, timeout: float) -> dict[str, Any]:
    """Run ``bench/<script>`` with a JSON report in ``tmp_path``; fail with its output unless it exits 0.
    ``arguments`` come last: after ``--``, they are the collector's."""
    report = tmp_path / f"{script}.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--json", str(report), "--db-dir", str(tmp_path), *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report_document: dict[str, Any] = json.loads(report.read_text())
    return report_document


# The runs pin one process, as they always ran, but one: the collector's default (auto) starts worker processes.
ONE_PROCESS = ("--ingest-workers", "1")
# A small load on one protocol, for the modes whose figures a smoke run only checks are there.
SMALL_LOAD = ("-p", "http-protobuf", "--warmup", "0.3", "-c", "2", "-n", "20", "--templates", "4", *ONE_PROCESS)


def test_bench_smoke_stores_every_acknowledged_span(tmp_path: Path) -> None:
    report = run_bench("ingest.py", "--smoke", *ONE_PROCESS, tmp_path=tmp_path, timeout=30)
    runs = report["runs"]
    assert {name.split()[0] for name in report["ratios"]} == PROTOCOLS
    assert {run["protocol"] for run in runs} == PROTOCOLS
    for run in runs:
        assert run["ingest_workers"] == 0, run  # as the collector logged it: the main process received
        assert run["acknowledged_spans"] > 0, run
        assert run["stored_spans"] == run["acknowledged_spans"], run
        assert run["stored_check"] == "ok", run
        # issue 18's yardstick: a naive single-core loop measured in the same run, and the collector over it
        assert run["reference_spans_per_s"] > 0, run
        assert run["ratio_to_reference"] == round(run["spans_per_s"] / run["reference_spans_per_s"], 3), run


def test_bench_smoke_in_the_default_mode(tmp_path: Path) -> None:
    """Without --ingest-workers the bench measures the collector's default, auto: on several CPUs, worker
    processes, whose CPU and RSS count too; each run records how many the collector said it started."""
    document = run_bench("ingest.py", "--smoke", "-p", "http-protobuf", "-p", "grpc", tmp_path=tmp_path, timeout=90)
    assert document["settings"]["ingest_workers"] is None
    workers = worker_processes("auto", Cpus.of_this_process())
    for run in document["runs"]:
        assert run["ingest_workers"] == workers, run
        assert run["errors"] == 0 and run["acknowledged_spans"] > 0, run
        assert run["stored_check"] == "ok", run
        if workers:
            assert run["daemon_peak_rss_mb"] > 150, run  # the main process alone is ~110 MB: the workers count


def test_bench_smoke_with_tls_and_an_api_key(tmp_path: Path) -> None:
    """--secure: the collector serves OTLP with TLS and a key; the clients verify it and send the key."""
    document = run_bench(
        "ingest.py", "--smoke", "--secure", *ONE_PROCESS, "-p", "http-protobuf", "-p", "grpc", tmp_path=tmp_path,
        timeout=60,
    )  # fmt: skip
    assert document["settings"]["secure"] is True
    for run in document["runs"]:
        assert run["errors"] == 0 and run["acknowledged_spans"] > 0, run
        assert run["stored_check"] == "ok", run


def test_hostile_bench_smoke_runs(tmp_path: Path) -> None:
    figures = run_bench("hostile.py", "--smoke", "--", *ONE_PROCESS, tmp_path=tmp_path, timeout=120)
    assert [run["status"] for run in figures["requests"]] == [200, 413, 200]
    assert all(run["healthz_failures"] == 0 for run in figures["requests"])
    assert figures["settle"]["ingested_traces_per_s"] > 0


def quick_figures(script: str, *arguments: str) -> dict[str, Any]:
    """Run a micro-benchmark ``bench/<script> --quick``; the JSON line it prints last."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return figures


def test_redaction_bench_quick_reports_its_figures() -> None:
    figures = quick_figures("redaction.py")
    assert figures["transform_us_per_span"] > 0 and figures["normal_mb_s"] > 0
    assert set(figures["adversarial_mb_s"]) and figures["addresses"]["count"] == 4_000


def test_stages_bench_quick_reports_every_stage() -> None:
    figures = quick_figures("stages.py")
    stages = {"parse", "decode", "transform", "rows", "summarize", "json-parse", "json-decode", "ingest", "json-ingest"}
    assert set(figures["us_per_span"]) == stages and all(figures["us_per_span"][stage] > 0 for stage in stages)
    assert figures["spans"] == 400


def test_handoff_bench_quick_reports_every_shape_and_the_channel() -> None:
    figures = quick_figures("handoff.py", "--channel", "1")
    compact, named, whole = figures["rows_and_summaries"], figures["summaries_as_named_tuples"], figures["with_spans"]
    assert figures["spans"] == 500 and compact["unpickle_us_per_span"] > 0
    # sizes: not timed, deterministic
    assert compact["pickled_bytes_per_span"] < named["pickled_bytes_per_span"] < whole["pickled_bytes_per_span"]
    assert compact["held_bytes_per_span"] < whole["held_bytes_per_span"]
    assert figures["channel"]["spans"] == 500 and figures["channel"]["receive_us_per_span"] > 0


def test_workers_bench_quick_reports_the_workers_cpu_and_their_shares() -> None:
    figures = quick_figures("workers.py")
    assert figures["protocol"] == "http-protobuf" and figures["spans_per_s"] > 0 and figures["worker_us_per_span"] > 0
    assert len(figures["shares"]) == 2 and abs(sum(figures["shares"]) - 1) < 0.02


def test_live_bench_quick_reports_the_cost_per_trace_of_each_subscriber() -> None:
    report = quick_figures("live.py")
    figures = report["figures"]
    assert set(figures) == {"none", "reading", "stalled"} and all(f["cpu_us_per_trace"] > 0 for f in figures.values())
    reading = figures["reading"]
    assert reading["every_trace_received"] and reading["lost_traces_per_subscriber"] == [0]
    assert reading["messages_per_subscriber"] < report["traces_per_run"] / 10  # batches, not a message per trace


def test_writer_bench_quick_reports_each_stage() -> None:
    best = quick_figures("writer.py")["best"]
    stages = {"insert", "latency", "latency flush", "repeated_calls", "rollup", "retention", "commit and the rest"}
    assert stages <= set(best) and all(best[stage] > 0 for stage in stages)
    assert best["total"] >= sum(best[stage] for stage in stages) - 0.5
    assert best["wall"] >= best["total"] and best["written (bytes)"] > 0  # one thread's CPU fits in its wall time


def test_pages_bench_quick_reports_the_pages_of_each_b_tree() -> None:
    figures = quick_figures("pages.py")
    trees = figures["trees"]
    # every span is a row of ``spans`` and an entry of its primary-key index; a fresh file grows at its end
    assert {"spans", "spans.sqlite_autoindex_spans_1", "spans.spans_start", "traces"} <= set(trees)
    assert trees["spans"]["new"] > 0 and trees["spans"]["leaf"] > 0
    assert figures["pages per span"] >= sum(tree["per span"] for tree in trees.values()) - 0.01
    assert figures["WAL bytes per span"] >= figures["pages per span"] * figures["page size"]


def test_settle_bench_quick_reports_each_stage() -> None:
    best = quick_figures("settle.py")["best"]
    assert best["traces"] > 0
    assert all(best[stage] > 0 for stage in ("judge", "latency", "settle and the rest"))


def test_settle_latency_bench_quick_runs_both_modes_and_settles() -> None:
    runs = dict(quick_figures("settle_latency.py"))
    assert set(runs) == {"steps", "whole"}
    for figures in runs.values():
        assert figures["spans/s"] > 0 and figures["p99 ms"] > 0 and figures["settled traces"] > 0


def test_bench_rate_mode_measures_half_the_maximum_on_a_fresh_collector_after_its_warmup(tmp_path: Path) -> None:
    """p99 at half the maximum in steady state: the maximum calibrated on a collector of its own, then the rate on a
    fresh one, the window after ``--rate-warmup`` (the calibration's traces never settle inside the window)."""
    report = run_bench(
        "ingest.py", "rate", "-d", "1", "--rate-warmup", "0.5", *SMALL_LOAD, tmp_path=tmp_path, timeout=120
    )
    calibrate, rate = report["runs"]
    assert (calibrate["phase"], rate["phase"]) == ("calibrate", "rate")
    assert rate["offered_spans_per_s"] == calibrate["spans_per_s"] / 2
    # a fresh database: what the rate run sent at half the rate for 1.5 s (warm-up included), none of the
    # calibration's 1.3 s at the maximum (on the calibration's collector it held both)
    assert 0 < rate["acknowledged_spans"] <= rate["stored_spans"] < calibrate["stored_spans"], (calibrate, rate)
    assert all(run["stored_check"] == "ok" for run in report["runs"])


def test_bench_overload_mode_sets_twice_a_steady_maximum_against_it_on_collectors_of_their_own(tmp_path: Path) -> None:
    """Overload's maximum is calibrated on a collector of its own and the overload runs on a fresh one, each window
    after ``--steady-warmup``: on one collector the calibration's traces settled inside the overload's window."""
    report = run_bench(
        "ingest.py",
        "overload",
        "-d",
        "1",
        "--steady-warmup",
        "0.5",
        "--overload-clients",
        "8",
        *SMALL_LOAD,
        tmp_path=tmp_path,
        timeout=120,
    )
    calibrate, overload = report["runs"]
    assert (calibrate["phase"], overload["phase"]) == ("calibrate", "overload")
    assert overload["offered_spans_per_s"] == 2 * calibrate["spans_per_s"]
    assert report["overload"]["http-protobuf"]["max_spans_per_s"] == calibrate["spans_per_s"]
    # each database holds its own run's spans alone (one collector for both held the two runs' spans)
    for run in (calibrate, overload):
        assert run["stored_check"] == "ok" and 0 < run["acknowledged_spans"] == run["stored_spans"], run


def test_bench_retention_and_resource_modes_report_their_figures(tmp_path: Path) -> None:
    """The storage figures of issue 10: ingest with retention deleting (stored + deleted = acknowledged),
    bytes per span, and the growth a large shared resource causes."""

    def bench(*arguments: str) -> dict[str, Any]:
        return run_bench("ingest.py", *arguments, tmp_path=tmp_path, timeout=120)

    small = ("-d", "1.5", *SMALL_LOAD)
    retention = bench("retention", *small, "--retention-max-size", str(2 * 1024 * 1024))
    assert [run["phase"] for run in retention["runs"]] == ["max", "max+retention"]
    assert all(run["stored_check"] == "ok" for run in retention["runs"])
    assert retention["retention"]["http-protobuf"]["deleted_spans"] > 0
    assert all(run["storage"]["bytes_per_span"] > 0 for run in retention["runs"])

    resource = bench("resource", "-n", "50", "--resource-requests", "2", *ONE_PROCESS)["resource"]["http-protobuf"]
    assert resource["spans"] == 100
    assert resource["amplification"] < 1  # the 1 MiB resource is stored once, not once per span


def test_query_bench_smoke_times_every_query(tmp_path: Path) -> None:
    """bench/query.py runs its phases and times each query of issue 13 (20,000 spans, 2 s phases)."""
    report = run_bench("query.py", "--smoke", tmp_path=tmp_path, timeout=180)
    assert list(report["runs"]) == [
        "max",
        "max + readers",
        "half",
        "half + readers",
        "max, before the websockets",
        "max + reading websocket",
        "max + stalled websocket",
        "max, after the websockets",
    ]
    assert all(query["count"] > 0 and query["errors"] == 0 for query in report["queries_ms"].values())
    assert report["ingest_with_readers_ratio"] > 0
    assert report["ingest_at_half_with_readers_ratio"] > 0
    assert report["ingest_with_reading_websocket_ratio"] > 0 and report["ingest_with_stalled_websocket_ratio"] > 0
    assert report["reading_websocket_bytes"] > 0  # the reading client received the feed
    assert all(run["collector_cpu_s_per_10k_spans"] > 0 for run in report["runs"].values())


def require_postgres() -> None:
    if server_binaries() is None:
        missing("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin; Debian's postgresql)")


def test_bench_scale_out_compares_sqlite_with_one_and_two_postgres_replicas(tmp_path: Path) -> None:
    """Issue 17's figure: scale-out runs SQLite, then 1 and 2 collectors on one throwaway PostgreSQL (both replicas
    get clients); every run stores exactly what was acknowledged, and the PostgreSQL server's CPU is measured."""
    require_postgres()
    small = ("-d", "1", *SMALL_LOAD)
    report = run_bench("ingest.py", "scale-out", *small, "--postgres", tmp_path=tmp_path, timeout=180)
    assert [run["phase"] for run in report["runs"]] == ["sqlite", "postgres x1", "postgres x2"]
    for run in report["runs"]:
        assert run["errors"] == 0 and run["acknowledged_spans"] > 0, run
        assert run["stored_check"] == "ok", run
    figures = report["scale_out"]["http-protobuf"]
    assert figures["sqlite"]["postgres_cpu_s_per_10k_spans"] is None
    assert figures["postgres x2"]["postgres_cpu_s_per_10k_spans"] > 0
    assert figures["postgres x2"]["of_sqlite"] > 0


def test_query_bench_smoke_on_postgres(tmp_path: Path) -> None:
    """bench/query.py --postgres: prefilled through the collector's PostgreSQL writer, every query answered."""
    require_postgres()
    report = run_bench("query.py", "--smoke", "--postgres", tmp_path=tmp_path, timeout=240)
    assert report["database"] == "postgresql" and report["prefill_seconds"] > 0
    assert all(query["count"] > 0 and query["errors"] == 0 for query in report["queries_ms"].values())
    assert report["runs"]["half + readers"]["postgres_cpu_s_per_10k_spans"] > 0
