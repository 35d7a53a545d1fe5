"""Ingest benchmark for genai-collector (issue 5): realistic agent traces over OTLP/HTTP protobuf,
OTLP/HTTP JSON and OTLP/gRPC, against a daemon it starts itself or any OTLP endpoint.

    .venv/bin/python bench/ingest.py max                       # every protocol, 10 s each
    .venv/bin/python bench/ingest.py rate --rate 20000 -p grpc
    .venv/bin/python bench/ingest.py overload -p http-protobuf
    .venv/bin/python bench/ingest.py large-db --prefill 10000000
    .venv/bin/python bench/ingest.py --smoke                   # CI: a few seconds, stored == acknowledged
    .venv/bin/python bench/ingest.py max --endpoint http://host:4318 --grpc-target host:4317
    .venv/bin/python bench/ingest.py max --secure              # TLS and an API key on both OTLP listeners

Requests are built and encoded before the clock starts; each send only writes a fresh nonce into the
trace ids of a pre-encoded body (the collector stores a span sent twice once), so the generator costs
a memory copy per request. Clients run in worker processes (``--processes``), each with its share of
the ``--clients`` concurrent senders, so that the GIL of one client process is not the limit.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apsw

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import postgres, storage
from bench.daemon import Daemon, count_spans, secure_collector_config
from bench.drivers import PROTOCOLS
from bench.measure import measure, reference_rate
from bench.prefill import prefill
from bench.report import Run, machine, percentiles_ms, table
from bench.traces import Template, build_templates

MODES = ("max", "rate", "overload", "large-db", "retention", "resource", "scale-out")

# --- targets: the daemon we start, or any endpoint -------------------------------------------


class Session:
    """A collector to send to during one or more runs: ``replicas`` of ours on ``db`` (a SQLite file or a
    PostgreSQL URL), or the endpoints given. ``close`` stops ours and compares the spans stored with the spans
    acknowledged."""

    def __init__(
        self,
        args: argparse.Namespace,
        db: Path | str | None,
        extra_args: Sequence[str] = (),
        *,
        replicas: int = 1,
        server: postgres.Server | None = None,
    ) -> None:
        self.args = args
        self.db = db
        self.server = server
        self.daemons: list[Daemon] = []
        self.stored_before = 0
        self.deleted_spans = 0  # by retention, during the session: stored + deleted = acknowledged
        self.runs: list[Run] = []
        self.exit_code: int | None = None
        self.reference_bodies: Callable[[], list[bytes]] | None = None  # the protobuf requests of the yardstick
        if db is not None:
            self.stored_before = stored_spans(db)
            for _ in range(replicas):  # one after the other: the first migrates the schema
                daemon = Daemon(db, [*args.daemon_args, *extra_args])
                self.daemons.append(daemon)
                daemon.wait_ready()
                print(f"bench: collector pid {daemon.pid} ready, database {db}", file=sys.stderr)

    @property
    def daemon(self) -> Daemon | None:
        return self.daemons[0] if self.daemons else None

    @property
    def pid(self) -> int | list[int] | None:
        return [daemon.pid for daemon in self.daemons] if self.daemons else self.args.pid

    def target(self, protocol: str) -> list[str]:
        if self.daemons:
            return [daemon.targets(protocol, "https" if self.args.secure else "http") for daemon in self.daemons]
        if protocol == "grpc":
            return [self.args.grpc_target]
        return [
            self.args.endpoint.rstrip("/")
            + ("" if self.args.endpoint.rstrip("/").endswith("/v1/traces") else "/v1/traces")
        ]

    def measure(
        self, protocol: str, phase: str, templates: list[Template], *, warmup: float | None = None, **options: Any
    ) -> Run:
        """One window; ``warmup`` in place of ``--warmup``."""
        args = self.args if warmup is None else argparse.Namespace(**{**vars(self.args), "warmup": warmup})
        # The yardstick right before and right after the window: on a shared machine the load moves within
        # seconds, and the mean of the two follows the window's conditions better than either alone.
        yardstick = self.reference_bodies is not None and self.args.reference_seconds > 0
        references = [self.reference()] if yardstick else []
        database_cpu = self.server.cpu_seconds if self.server else None
        run = measure(
            protocol, phase, templates, self.target(protocol), self.pid, args, database_cpu=database_cpu, **options
        )
        if self.daemon is not None:
            run.ingest_workers = self.daemon.ingest_workers
        ratio = ""
        if yardstick:
            references.append(self.reference())
            run.reference_samples = references
            run.reference_spans_per_s = round(sum(r["spans_per_s"] for r in references) / len(references), 1)
            run.reference_core_share = round(sum(r["core_share"] for r in references) / len(references), 3)
            run.ratio_to_reference = round(run.spans_per_s / run.reference_spans_per_s, 3)
            ratio = f"  reference {run.reference_spans_per_s:,.0f} spans/s: ratio {run.ratio_to_reference:.3f}"
        self.runs.append(run)
        print(
            f"  {protocol:<13} {phase:<12} {run.spans_per_s:>10,.0f} spans/s  p99 {run.latency_ms['p99']} ms"
            f"  ingest workers {'-' if run.ingest_workers is None else run.ingest_workers}"
            f"  refused {run.refused}  errors {run.errors}{ratio}",
            file=sys.stderr,
        )
        return run

    def reference(self) -> dict[str, float]:
        assert self.reference_bodies is not None
        return reference_rate(self.reference_bodies(), self.args.reference_seconds)

    def kill(self) -> None:
        for daemon in self.daemons:
            daemon.kill()

    def close(self) -> bool:
        """Stop the daemons (drain) and check stored == acknowledged; False when the check fails."""
        if not self.daemons:
            for run in self.runs:
                run.stored_check = "not checked (external endpoint)"
            return True
        codes = [daemon.stop() for daemon in self.daemons]
        self.exit_code = next((code for code in codes if code != 0), 0)
        problems = [line for daemon in self.daemons for line in daemon.problems()]
        assert self.db is not None
        stored = stored_spans(self.db) - self.stored_before + self.deleted_spans
        figures = postgres.storage_figures(self.db) if isinstance(self.db, str) else storage.storage_figures(self.db)
        for run in self.runs:
            run.storage = figures
        acknowledged = sum(run.acknowledged_spans for run in self.runs)
        unknown = sum(run.unknown_outcome_spans for run in self.runs)
        ok = acknowledged <= stored <= acknowledged + unknown
        if ok and stored == acknowledged:
            verdict = "ok"
        elif ok:
            verdict = f"ok ({stored - acknowledged} spans of timed-out requests were stored too)"
        elif stored < acknowledged:
            verdict = f"FAILED: {acknowledged - stored} acknowledged spans are missing from the database"
        else:
            verdict = f"FAILED: {stored - acknowledged - unknown} more spans stored than were sent and acknowledged"
        if self.exit_code != 0:
            ok = False
            verdict += (
                "; a collector did not stop within 60 s of SIGTERM and was killed"
                if self.exit_code is None
                else f"; a collector exited with code {self.exit_code}"
            )
        for run in self.runs:
            run.stored_spans = stored
            run.stored_check = verdict
            if problems:
                run.notes.append(f"collector logged {len(problems)} warnings/errors, first: {problems[0][:300]}")
        if len(self.runs) > 1:
            for run in self.runs:
                run.notes.append(f"stored/acknowledged counted over the {len(self.runs)} runs against one collector")
        if not ok:
            print(f"bench: {verdict}", file=sys.stderr)
            if problems:
                print("\n".join(problems[-20:]), file=sys.stderr)
        return ok


def stored_spans(db: Path | str) -> int:
    if isinstance(db, str):
        return postgres.count_spans(db)
    return count_spans(db) if db.exists() else 0


class QueryTimer:
    """Times a trace lookup by id and the latest-50-traces query on a read connection of its own."""

    LOOKUP = "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_time_unix_nano"
    LATEST_TRACES = "SELECT * FROM traces ORDER BY start_time_unix_nano DESC LIMIT 50"
    LATEST_ROOTS = "SELECT * FROM spans WHERE parent_span_id IS NULL ORDER BY start_time_unix_nano DESC LIMIT 50"

    def __init__(self, db: Path, trace_ids: list[str]) -> None:
        self.db = db
        self.trace_ids = trace_ids
        self.timings: dict[str, list[float]] = {"trace_by_id": [], "latest_50_traces": []}
        self.latest_source = ""

    def once(self, connection: apsw.Connection, rng: random.Random) -> None:
        started = time.perf_counter()
        rows = connection.execute(self.LOOKUP, (rng.choice(self.trace_ids),)).fetchall()
        self.timings["trace_by_id"].append(time.perf_counter() - started)
        assert rows, "a prefilled trace was not found"
        has_traces = connection.execute("SELECT EXISTS (SELECT 1 FROM traces)").fetchone()[0]
        self.latest_source = "traces" if has_traces else "spans (root spans; traces is empty)"
        started = time.perf_counter()
        connection.execute(self.LATEST_TRACES if has_traces else self.LATEST_ROOTS).fetchall()
        self.timings["latest_50_traces"].append(time.perf_counter() - started)

    def run_until(self, stop_at: float, interval: float = 0.25) -> None:
        connection = apsw.Connection(str(self.db), flags=apsw.SQLITE_OPEN_READONLY)
        connection.set_busy_timeout(5000)
        rng = random.Random(3)
        try:
            while time.monotonic() < stop_at:
                self.once(connection, rng)
                time.sleep(interval)
        finally:
            connection.close()

    def summary(self) -> dict[str, dict[str, float | None]]:
        return {name: {**percentiles_ms(sorted(values)), "count": len(values)} for name, values in self.timings.items()}  # type: ignore[dict-item]


# --- modes -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs: list[Run] = []
        self.ok = True
        self.extra: dict[str, Any] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="genai-bench-", dir=args.db_dir))
        self._templates: dict[str, list[Template]] = {}
        self._server: postgres.Server | None = None
        if args.secure:
            args.ca_file, args.api_key, config = secure_collector_config(self.workdir)
            args.daemon_args = ["--config", str(config), *args.daemon_args]

    def templates(self, protocol: str) -> list[Template]:
        if protocol not in self._templates:
            started = time.monotonic()
            self._templates[protocol] = build_templates(self.args.templates, self.args.spans_per_request, protocol)
            size = sum(len(t.body) for t in self._templates[protocol]) / len(self._templates[protocol])
            print(
                f"bench: {self.args.templates} {protocol} requests of {self.args.spans_per_request} spans pre-encoded "
                f"({size / 1024:.0f} KiB each) in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
        return self._templates[protocol]

    def reference_bodies(self) -> list[bytes]:
        """The requests the reference loop parses: the protobuf encoding of the load's requests (the same
        bytes the HTTP protobuf and gRPC clients send; for OTLP/JSON, the same traces in protobuf)."""
        return [template.body for template in self.templates("http-protobuf")]

    @contextlib.contextmanager
    def session(self, db: Path | str | None, extra_args: Sequence[str] = (), *, replicas: int = 1) -> Iterator[Session]:
        if self.args.external:
            db = None
        server = self._server if isinstance(db, str) else None
        session = Session(self.args, db, extra_args, replicas=replicas, server=server)
        session.reference_bodies = self.reference_bodies
        try:
            yield session
        except BaseException:
            session.kill()
            raise
        self.ok &= session.close()
        self.runs.extend(session.runs)

    def fresh_db(self, name: str, *, engine: str | None = None) -> Path | str:
        """A new empty database: a SQLite file, or with ``--postgres`` (or ``engine="postgres"``) a PostgreSQL
        database made on the server (a throwaway cluster started on first use)."""
        if (engine or ("postgres" if self.args.postgres is not None else "sqlite")) == "sqlite":
            return self.workdir / f"{name}.db"
        if self._server is None:
            self._server = postgres.Server(
                self.args.postgres or None,
                keep=self.args.keep,
                settings=postgres.server_settings(self.args.postgres_setting),
            )
        return self._server.database(name)

    def fresh_sqlite(self, name: str) -> Path:
        return self.workdir / f"{name}.db"

    def maximum(self, protocol: str, *, steady: bool) -> float:
        """``--max`` if given, else a ``calibrate`` run of ``max`` on a collector of its own; ``steady``: its window
        after ``--steady-warmup`` seconds, so that traces settle in it as they do at any time."""
        if self.args.max:
            return self.args.max
        warmup = self.steady_warmup if steady else None
        with self.session(self.fresh_db(f"calibrate-{protocol}")) as session:
            run = session.measure(
                protocol, "calibrate", self.templates(protocol), warmup=warmup, clients=self.args.clients
            )
        return run.spans_per_s

    @property
    def steady_warmup(self) -> float:
        return max(self.args.warmup, self.args.steady_warmup)

    def mode_max(self, protocol: str) -> None:
        with self.session(self.fresh_db(f"max-{protocol}"), replicas=self.args.replicas) as session:
            session.measure(protocol, "max", self.templates(protocol), clients=self.args.clients)

    def mode_scale_out(self, protocol: str) -> None:
        """``max`` on SQLite, then on PostgreSQL with 1, 2... ``--replicas`` collectors sharing one database (the
        clients spread over them in turn), in one run: durable spans/s and their ratios."""
        figures: dict[str, Any] = {}
        with self.session(self.fresh_db(f"sqlite-{protocol}", engine="sqlite")) as session:
            figures["sqlite"] = session.measure(protocol, "sqlite", self.templates(protocol), clients=self.args.clients)
        for replicas in range(1, self.args.replicas + 1):
            phase = f"postgres x{replicas}"
            db = self.fresh_db(f"pg{replicas}-{protocol}", engine="postgres")
            with self.session(db, replicas=replicas) as session:
                figures[phase] = session.measure(protocol, phase, self.templates(protocol), clients=self.args.clients)
        sqlite = figures["sqlite"].spans_per_s
        self.extra.setdefault("scale_out", {})[protocol] = {
            phase: {
                "spans_per_s": run.spans_per_s,
                "p99_ms": run.latency_ms["p99"],
                "of_sqlite": round(run.spans_per_s / sqlite, 3) if sqlite else None,
                "collector_cpu_s_per_10k_spans": run.daemon_cpu_s_per_10k_spans,
                "postgres_cpu_s_per_10k_spans": run.database_cpu_s_per_10k_spans,
                "host_cpu_busy_pct": run.host_cpu_busy_pct,
                "other_cpu_pct": run.other_cpu_pct,
            }
            for phase, run in figures.items()
        }

    def mode_rate(self, protocol: str) -> None:
        """The latency at half the maximum (or ``--rate``) in steady state: the maximum measured on a collector of its
        own, whose traces, sent at twice the rate, would otherwise settle inside the window; then, on a fresh one,
        ``--steady-warmup`` seconds at the rate before the window, past ``snapshots.settle_after`` (10 s), so that the
        traces the window sends settle in it as they do at any time in a collector running at that rate."""
        rate = self.args.rate or self.maximum(protocol, steady=False) / 2
        with self.session(self.fresh_db(f"rate-{protocol}")) as session:
            session.measure(
                protocol,
                "rate",
                self.templates(protocol),
                warmup=self.steady_warmup,
                clients=self.args.clients,
                rate_spans=rate,
            )

    def mode_overload(self, protocol: str) -> None:
        """Twice the maximum against the maximum, both in steady state (``maximum``): the overload on a fresh
        collector, the window after ``--steady-warmup`` seconds of it. On the collector just calibrated, the
        calibration's traces settled inside the window, and a maximum without settling was set against an overload
        with twice its share of it."""
        maximum = self.maximum(protocol, steady=True)
        rate = self.args.rate or 2 * maximum
        with self.session(self.fresh_db(f"overload-{protocol}")) as session:
            run = session.measure(
                protocol,
                "overload",
                self.templates(protocol),
                warmup=self.steady_warmup,
                clients=self.args.overload_clients,
                rate_spans=rate,
            )
            ratio = run.spans_per_s / maximum if maximum else 0
            run.notes.append(
                f"accepted {run.spans_per_s:,.0f} spans/s = {ratio:.0%} of the maximum {maximum:,.0f} spans/s"
            )
            if not run.refused and not run.refused_without_hint:
                run.notes.append("no request was refused: the load did not fill the queue (more --overload-clients?)")
            if run.refused_without_hint:
                run.notes.append(f"{run.refused_without_hint} refusals carried no retry hint (Retry-After / RetryInfo)")
            self.extra.setdefault("overload", {})[protocol] = {
                "max_spans_per_s": maximum,
                "accepted_ratio": round(ratio, 3),
            }

    def mode_large_db(self, protocol: str) -> None:
        args = self.args
        if "prefill" not in self.extra:
            db = args.prefilled_db or self.fresh_sqlite("large")
            if args.prefilled_db and db.exists():
                print(f"bench: using the prefilled database {db}", file=sys.stderr)
                connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
                ids = [
                    row[0]
                    for row in connection.execute(
                        "SELECT trace_id FROM spans WHERE trace_id LIKE '%ffff%' AND parent_span_id IS NULL LIMIT 1000"
                    )
                ]
                connection.close()
                self.extra["prefill"] = {"db": str(db), "reused": True, "sample_trace_ids": ids}
            else:
                self.extra["prefill"] = {
                    "db": str(db),
                    **prefill(db, args.prefill, args.spans_per_request, args.prefill_transaction),
                }
        info = self.extra["prefill"]
        db = Path(info["db"])
        empty = None
        if not args.no_baseline:
            with self.session(self.fresh_sqlite(f"empty-{protocol}")) as session:
                empty = session.measure(protocol, "empty-db", self.templates(protocol), clients=args.clients)
        timer = QueryTimer(db, info["sample_trace_ids"])
        with self.session(db, ("--retention-max-age", "0")) as session:  # the prefill goes back 30 days
            run = session.measure(
                protocol, "large-db", self.templates(protocol), clients=args.clients, during=timer.run_until
            )
            during = timer.summary()
            timer.timings = {name: [] for name in timer.timings}
            timer.run_until(time.monotonic() + 2, interval=0.05)
            run.queries_ms = {f"{name} (during ingest)": value for name, value in during.items()}
            run.queries_ms.update({f"{name} (idle)": value for name, value in timer.summary().items()})
            run.notes.append(f"latest traces read from {timer.latest_source}")
            if empty:
                ratio = run.spans_per_s / empty.spans_per_s if empty.spans_per_s else 0
                run.notes.append(f"ingest with the prefilled database = {ratio:.0%} of the empty-database rate")

    def mode_retention(self, protocol: str) -> None:
        """``max`` without retention, then ``max`` with a ``retention.max_size`` a third of what that run
        stored, so that retention deletes through most of the window: throughput with and without."""
        without_db = self.fresh_sqlite(f"no-retention-{protocol}")
        with self.session(without_db, ("--retention-max-age", "0")) as session:
            baseline = session.measure(protocol, "max", self.templates(protocol), clients=self.args.clients)
        max_size = storage.retention_size(storage.database_bytes(without_db), self.args.retention_max_size)
        options = ("--retention-max-age", "0", "--retention-max-size", str(max_size))
        with self.session(self.fresh_sqlite(f"retention-{protocol}"), options) as session:
            run = session.measure(protocol, "max+retention", self.templates(protocol), clients=self.args.clients)
            if session.daemon:
                session.deleted_spans = storage.settled_deletions(session.daemon.ports["admin"])
            ratio = run.spans_per_s / baseline.spans_per_s if baseline.spans_per_s else 0
            run.notes.append(
                f"retention.max_size {max_size / 2**20:,.0f} MiB; {session.deleted_spans:,} spans deleted by retention "
                f"during the run; {ratio:.0%} of the {baseline.spans_per_s:,.0f} spans/s without retention"
            )
            self.extra.setdefault("retention", {})[protocol] = {
                "max_size_bytes": max_size,
                "deleted_spans": session.deleted_spans,
                "spans_per_s_without": baseline.spans_per_s,
                "spans_per_s_with": run.spans_per_s,
                "ratio": round(ratio, 3),
            }

    def mode_resource(self, protocol: str) -> None:
        """Requests whose resource carries ``--resource-bytes`` of attributes, shared by ``-n`` spans:
        how much the database grows per byte received."""
        if protocol == "grpc":
            print("bench: resource mode sends OTLP/HTTP protobuf; skipping grpc", file=sys.stderr)
            return
        args = self.args
        db = self.fresh_sqlite(f"resource-{protocol}")
        session = Session(args, db)
        assert session.daemon is not None
        try:
            sent = storage.send_large_resources(
                session.daemon.targets("http-protobuf"),
                args.resource_bytes,
                args.spans_per_request,
                args.resource_requests,
            )
        finally:
            session.daemon.stop()
        figures = {
            "resource_bytes": args.resource_bytes,
            "spans_per_request": args.spans_per_request,
            "requests": args.resource_requests,
            **storage.amplification(db, sent, 0),
            **storage.storage_figures(db),
        }
        self.extra.setdefault("resource", {})[protocol] = figures
        print(
            f"  resource: {args.resource_requests} requests of {args.spans_per_request} spans sharing a resource of "
            f"{args.resource_bytes / 2**20:.2f} MiB ({sent / 2**20:.1f} MiB sent) grew the database by "
            f"{figures['database_growth_bytes'] / 2**20:.1f} MiB: x{figures['amplification']}",
            file=sys.stderr,
        )

    def run(self) -> None:
        if self.args.mode == "resource":
            self.args.protocols = ["http-protobuf"]
        for protocol in self.args.protocols:
            print(f"bench: {self.args.mode} over {protocol}", file=sys.stderr)
            getattr(self, "mode_" + self.args.mode.replace("-", "_"))(protocol)

    def cleanup(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.args.keep:
            print(f"bench: databases kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    daemon_args: list[str] = []
    if "--" in argv:
        daemon_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="Ingest benchmark: realistic agent traces over OTLP/HTTP protobuf, OTLP/HTTP JSON and OTLP/gRPC.",
        epilog="Arguments after -- go to `genai-collector serve` (as does each --daemon-arg).",
    )
    parser.add_argument(
        "mode",
        nargs="?",
        choices=MODES,
        default="max",
        help="max (default), rate, overload, large-db, retention, resource or scale-out",
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="",
        metavar="URL",
        help="store in PostgreSQL: a new database per run on the server of URL (its user may create databases), or "
        "without URL on a throwaway durable cluster of Debian's server binaries; scale-out uses it for its "
        "PostgreSQL runs",
    )
    parser.add_argument("--postgres-setting", action="append", default=[], help=postgres.SETTING_HELP)
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="collectors sharing the database, the clients spread over them in turn (PostgreSQL only; max: default "
        "1; scale-out measures 1 to this many, default 2)",
    )
    parser.add_argument(
        "-p",
        "--protocol",
        action="append",
        choices=PROTOCOLS,
        dest="protocols",
        help="repeatable; default: every protocol",
    )
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured per run (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds sent before the measured window (default 1)")
    parser.add_argument(
        "--steady-warmup",
        "--rate-warmup",
        dest="steady_warmup",
        type=float,
        default=12.0,
        help="rate, and overload and its calibration: seconds sent before the window (default 12: past "
        "settle_after, 10 s, so that settling is in its steady state in the window)",
    )
    parser.add_argument("-c", "--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("-n", "--spans-per-request", type=int, default=100, help="spans per request (default 100)")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes sharing the clients (default 1: the client costs about 1/20 of the collector)",
    )
    parser.add_argument(
        "--reference-seconds",
        type=float,
        default=3.0,
        help="seconds of the naive single-core reference loop run before and after each measured window "
        "(default 3 each; 0: none)",
    )
    parser.add_argument("--templates", type=int, default=32, help="distinct pre-encoded requests (default 32)")
    parser.add_argument(
        "--rate",
        type=float,
        help="spans/s offered: rate mode's fixed rate (default: half the maximum); "
        "overload's rate (default: twice the maximum)",
    )
    parser.add_argument(
        "--max", type=float, help="a known maximum in spans/s, instead of measuring one first (rate and overload)"
    )
    parser.add_argument(
        "--overload-clients",
        type=int,
        default=256,
        help="concurrent requests in overload mode, enough to fill the collector's queue (default 256)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before a request counts as timed out (default 30)"
    )
    parser.add_argument(
        "--prefill", type=int, default=10_000_000, help="large-db: spans written before the run (default 10,000,000)"
    )
    parser.add_argument(
        "--prefill-transaction", type=int, default=200_000, help="large-db: rows per prefill transaction"
    )
    parser.add_argument(
        "--prefilled-db", type=Path, help="large-db: reuse (or create and keep) this prefilled database"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="large-db: skip the empty-database run of each protocol"
    )
    parser.add_argument(
        "--retention-max-size",
        type=int,
        help="retention: retention.max_size in bytes of the run with retention (default: a third of what the run "
        "without retention stored, at least 16 MiB)",
    )
    parser.add_argument(
        "--resource-bytes",
        type=int,
        default=1024 * 1024,
        help="resource: bytes of resource attributes per request (default 1 MiB)",
    )
    parser.add_argument("--resource-requests", type=int, default=10, help="resource: requests sent (default 10)")
    parser.add_argument(
        "--endpoint", help="send OTLP/HTTP to this collector (http://host:4318) instead of starting one"
    )
    parser.add_argument("--grpc-target", help="send OTLP/gRPC to this collector (host:4317) instead of starting one")
    parser.add_argument(
        "--pid", type=int, help="with --endpoint/--grpc-target: the collector's pid, for its RSS and CPU"
    )
    parser.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        help="a flag for the collector we start, e.g. --daemon-arg=--queue-capacity=50000",
    )
    parser.add_argument(
        "--ingest-workers",
        help="the collector we start runs this many ingest worker processes (its --ingest-workers: a number or auto; "
        "without it, the collector's default, auto); CPU and RSS are those of all its processes together, and each "
        "run records the count the collector logged",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="serve both OTLP listeners of the collector we start with TLS and an API key made for the run; "
        "the clients verify the certificate and send the key",
    )
    parser.add_argument(
        "--ca-file", help="with --endpoint https://... or --grpc-target: the CA to verify the collector with (TLS)"
    )
    parser.add_argument("--api-key", help="with --endpoint/--grpc-target: send Authorization: Bearer <key>")
    parser.add_argument("--db-dir", help="where temporary databases go (default: the system temp directory)")
    parser.add_argument("--keep", action="store_true", help="keep the databases after the run")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--json-stdout", action="store_true", help="print the JSON on stdout (the table goes to stderr)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI check: max mode, every protocol, ~2 s each, small load; asserts only stored == acknowledged",
    )
    args = parser.parse_args(argv)
    args.daemon_args = [*args.daemon_arg, *daemon_args]
    if args.ingest_workers is not None:
        args.daemon_args += ["--ingest-workers", args.ingest_workers]
    args.external = bool(args.endpoint or args.grpc_target)
    if args.secure and args.external:
        parser.error("--secure configures the collector the bench starts; against another give --ca-file and --api-key")
    if args.smoke:
        args.mode = "max"
        args.protocols = args.protocols or list(PROTOCOLS)
        args.duration, args.warmup, args.clients, args.spans_per_request, args.templates = 1.5, 0.3, 2, 20, 4
        args.reference_seconds = 0.3
    args.protocols = list(dict.fromkeys(args.protocols or PROTOCOLS))
    if args.external:
        if args.mode in ("large-db", "retention", "resource"):
            parser.error(f"{args.mode} needs a collector of ours; it cannot run against --endpoint/--grpc-target")
        missing = [
            p for p in args.protocols if (p == "grpc" and not args.grpc_target) or (p != "grpc" and not args.endpoint)
        ]
        if missing and (args.protocols is None or len(missing) < len(args.protocols)):
            args.protocols = [p for p in args.protocols if p not in missing]
        elif missing:
            parser.error(f"no target for {', '.join(missing)}: give --endpoint (HTTP) and/or --grpc-target (gRPC)")
    if args.replicas is None:
        args.replicas = 2 if args.mode == "scale-out" else 1
    if args.replicas > 1 and args.mode not in ("max", "scale-out"):
        parser.error("--replicas applies to max and scale-out")
    if args.replicas > 1 and args.mode == "max" and args.postgres is None:
        parser.error("--replicas above 1 needs --postgres: SQLite has a single writer")
    if args.postgres is not None and args.mode in ("large-db", "retention", "resource"):
        parser.error(f"{args.mode} measures SQLite's files; it does not take --postgres")
    if args.external and (args.postgres is not None or args.mode == "scale-out"):
        parser.error("--postgres and scale-out start collectors of ours; they cannot run against --endpoint")
    for name in ("clients", "spans_per_request", "processes", "templates", "overload_clients", "replicas"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)
    started = time.time()
    try:
        bench.run()
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        bench.cleanup()
    report = {
        "mode": args.mode,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "settings": {
            "protocols": args.protocols,
            "postgres": (
                None if args.postgres is None else {"replicas": args.replicas, "settings": args.postgres_setting}
            ),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "spans_per_request": args.spans_per_request,
            "processes": args.processes,
            "templates": args.templates,
            "reference_seconds": args.reference_seconds,
            "overload_clients": args.overload_clients if args.mode == "overload" else None,
            "target": (
                {"endpoint": args.endpoint, "grpc_target": args.grpc_target}
                if args.external
                else "collector started by the bench"
            ),
            "daemon_args": args.daemon_args,
            "ingest_workers": args.ingest_workers,
            "secure": args.secure or bool(args.ca_file or args.api_key),
        },
        "runs": [asdict(run) for run in bench.runs],
        # issue 18's figure by run: the collector's durable spans/s over the naive loop's, measured alongside
        "ratios": {
            f"{run.protocol} {run.phase}": {
                "durable_spans_per_s": run.spans_per_s,
                "reference_spans_per_s": run.reference_spans_per_s,
                "ratio": run.ratio_to_reference,
            }
            for run in bench.runs
            if run.ratio_to_reference is not None
        },
        **{key: {k: v for k, v in value.items() if k != "sample_trace_ids"} for key, value in bench.extra.items()},
        "ok": bench.ok,
    }
    document = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(document + "\n")
    rendered = table(bench.runs)
    if args.json_stdout:
        print(rendered, file=sys.stderr)
        print(document)
    else:
        print(rendered)
    if not bench.ok:
        print(
            "bench: FAILED: stored spans do not match acknowledged spans, or the collector did not stop cleanly",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
