"""The SQLite writer alone: CPU per span of ``SpanWriter.write`` on the ingest benchmark's corpus, stage by stage.

    .venv/bin/python bench/writer.py --db /var/tmp/copy-of-a-big.db   # writes into it: give it a copy
    .venv/bin/python bench/writer.py --quick                          # a fresh database in a temporary folder

The requests are the ingest benchmark's (``bench/traces.py``), each with fresh trace ids, decoded, transformed,
encoded (``SpanWriter.prepare``) and summarized before the clock starts, as the ingest side does, then written
``--requests-per-batch`` at a time, as the pipeline's writer thread would, the latency histograms' counts flushed
and a retention step run (the daemon's flush and retention jobs, once a second) every ``--flush-every`` batches and
after the last. Timed by the writer thread's CPU time
(``time.thread_time``), so the load of other processes disturbs it less than wall time; each stage is the CPU of its
function, the rest of a write (``commit and the rest``) is the transaction's begin and commit (the WAL write, and
the writer's WAL hook: its checkpoint, or its wait for the checkpointer's; their fsyncs wait without CPU), the
resources' lookup, the evaluations' link and the loop around them. ``process`` is the CPU of every thread of the
process over the same writes (the writer's, and any thread a change adds beside it). ``wall`` is the writer's
elapsed time (fsync waits included, and whatever the load takes), ``written`` the bytes the process handed to
``write`` (the WAL, checkpoints, temporary files), per span.
Indexes cost more on a big table: run it on a copy of a database that holds many spans.

``--checkpointer`` runs the daemon's WAL checkpointer (``checkpoint.WalCheckpointer``) beside the writer, as the
service does: ``hook`` (the daemon's: it takes over the writer's automatic checkpoint through a WAL hook on the write
connection), ``rounds`` (a round once a second only, the writer checkpointing itself at ``wal_autocheckpoint``, as
before 2026-11-30's WAL-restart change) or ``off`` (the writer checkpoints every frame itself); a comma-separated
list runs them alternately, each run into a fresh file unless ``--db`` is given. ``checkpoint (wall)`` is the
writer thread's wall time in its WAL hook per span: its own checkpoints, or its wait for the round that lets it
start the WAL over (``rounds`` and ``off`` time a hook doing what SQLite's does); ``own checkpoints`` counts the
checkpoints the writer ran itself, ``wal frames (max)`` the WAL's high-water mark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from bench.traces import build_templates, nonce_for
from collector.component import Deadline
from collector.config import Settings
from collector.genai.transform import Transform
from collector.model import Records
from collector.observability.metrics import CollectorMetrics
from collector.otlp import decode_spans, parse_protobuf
from collector.storage.sqlite import checkpoint, latency, writer
from collector.storage.sqlite.checkpoint import WalCheckpointer

# (module, function name, stage): each is timed where the writer calls it.
STAGES = (
    (writer, "insert_rows", "insert"),
    (writer, "new_spans", "new_spans"),
    (latency, "add_spans", "latency"),
    (latency, "remove_traces", "latency"),
    (getattr(latency, "Pending", None), "add", "latency"),
    (getattr(latency, "Pending", None), "flush", "latency flush"),
    (writer, "mark_repeated_calls", "repeated_calls"),
    (writer, "traces_stored_before", "repeated_calls"),
    (writer, "roll_up", "rollup"),
    (getattr(writer, "Retention", None), "step", "retention"),
)


def prepared_batches(batches: int, requests_per_batch: int, spans_per_request: int, salt: int) -> list[list[Records]]:
    templates = build_templates(requests_per_batch * 4, spans_per_request, "http-protobuf")
    transform = Transform(Settings())
    result = []
    for index in range(batches):
        batch = []
        for slot in range(requests_per_batch):
            template = templates[(index * requests_per_batch + slot) % len(templates)]
            body = template.with_nonce(nonce_for("http-protobuf", (salt << 32) | (index * requests_per_batch + slot)))
            spans, _ = decode_spans(parse_protobuf(body, ExportTraceServiceRequest))
            records, _ = transform.spans(spans)
            writer.prepare(records).summarize()  # as an ingest thread or worker does (receivers/ingest.py)
            batch.append(records)
        result.append(batch)
    return result


_NESTED: list[str] = []  # the stages being timed, innermost last: a stage's CPU excludes the stages inside it


def timed(clock: dict[str, float], stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        _NESTED.append(stage)
        try:
            return function(*args, **kwargs)
        finally:
            _NESTED.pop()
            spent = time.thread_time() - started
            clock[stage] += spent
            if _NESTED:
                clock[_NESTED[-1]] -= spent

    return wrapper


def written_bytes() -> int:
    """What this process has handed to ``write`` and ``pwrite`` so far (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))
    except OSError:
        return 0


class WalHookClock:
    """The writer thread's wall time in its WAL hook, its own checkpoints and the WAL's high-water mark."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.own = 0
        self.frames = 0

    def wrap(self, hook: Callable[[Any, str, int], int]) -> Callable[[Any, str, int], int]:
        def timed_hook(connection: Any, name: str, frames: int) -> int:
            started = time.perf_counter()
            try:
                return hook(connection, name, frames)
            finally:
                self.seconds += time.perf_counter() - started
                self.frames = max(self.frames, frames)

        return timed_hook

    def sqlite_default(self, backstop: int) -> Callable[[Any, str, int], int]:
        """What SQLite's own hook does at ``wal_autocheckpoint``, counted."""

        def checkpoint_at_mark(connection: Any, name: str, frames: int) -> int:
            if frames >= backstop:
                self.own += 1
                checkpoint.checkpoint_as_sqlite(connection)
            return 0

        return checkpoint_at_mark


def start_checkpointer(store: writer.SpanWriter, mode: str, clock: WalHookClock) -> WalCheckpointer | None:
    if mode == "off":
        return None
    checkpointer = WalCheckpointer(
        store.path, CollectorMetrics(CollectorRegistry()), writer=store.connection if mode == "hook" else None
    )
    asyncio.run(checkpointer.start())
    if mode == "hook":
        store.connection.setwalhook(clock.wrap(checkpointer.committed))
    return checkpointer


async def stop(checkpointer: WalCheckpointer) -> None:
    """In a coroutine: a ``Deadline`` reads the running loop's clock."""
    await checkpointer.stop(Deadline.after(10))


def run(db: Path, batches: list[list[Records]], flush_every: int, mode: str = "off") -> dict[str, float]:
    """CPU µs per span of each stage, and of the whole write."""
    clock: dict[str, float] = defaultdict(float)
    originals = []
    for module, name, stage in STAGES:
        if module is None or not hasattr(module, name):  # a writer that has no such step (an older or newer one)
            continue
        originals.append((module, name, getattr(module, name)))
        setattr(module, name, timed(clock, stage, getattr(module, name)))
    store = writer.SpanWriter(db)
    hooks = WalHookClock()
    if mode != "hook":
        store.connection.setwalhook(hooks.wrap(hooks.sqlite_default(store.connection.pragma("wal_autocheckpoint"))))
    checkpointer = start_checkpointer(store, mode, hooks)
    try:
        store.write(batches[0])  # warm the page cache and the statement cache, as a running collector is
        spans = 0
        process_started, started, wall_started = time.process_time(), time.thread_time(), time.perf_counter()
        written_before = written_bytes()
        for index, batch in enumerate(batches[1:], 1):
            store.write(batch)
            spans += sum(len(records.spans) for records in batch)
            if index % flush_every == 0:  # the daemon's flush and retention jobs, once a second
                once_a_second(store)
        once_a_second(store)
        total = time.thread_time() - started
        process = time.process_time() - process_started
        wall = time.perf_counter() - wall_started
        written = written_bytes() - written_before
    finally:
        if checkpointer is not None:
            asyncio.run(stop(checkpointer))
        store.close()
        for module, name, function in originals:
            setattr(module, name, function)
    # the warm-up's stages are in the clock too: take them out by scaling to the timed batches
    share = (len(batches) - 1) / len(batches)
    figures = {stage: seconds * share / spans * 1e6 for stage, seconds in clock.items()}
    figures["commit and the rest"] = total / spans * 1e6 - sum(figures.values())
    figures["total"] = total / spans * 1e6
    figures["process"] = process / spans * 1e6  # every thread: work moved off the writer still counts here
    figures["wall"] = wall / spans * 1e6
    figures["written (bytes)"] = written / spans
    figures["checkpoint (wall)"] = hooks.seconds / spans * 1e6
    figures["own checkpoints"] = hooks.own + (checkpointer.writer_checkpoints if checkpointer is not None else 0)
    figures["wal frames (max)"] = hooks.frames
    return {stage: round(value, 1) for stage, value in figures.items()}


def once_a_second(store: writer.SpanWriter) -> None:
    """What the daemon's maintenance jobs do between batches once a second (those this writer has)."""
    if hasattr(store, "flush"):
        store.flush()
    store.retain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="a database to write into (a copy: it grows); default a new one")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--requests-per-batch", type=int, default=4)
    parser.add_argument("--spans-per-request", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="runs; the best of each stage is printed")
    parser.add_argument("--quick", action="store_true", help="5 batches, one run")
    parser.add_argument(
        "--flush-every",
        type=int,
        default=12,
        help="batches between two flushes of the latency histograms' counts (12 of 400 spans: a second at the "
        "~5,000 spans/s the writer keeps up with)",
    )
    parser.add_argument(
        "--checkpointer",
        default="hook",
        help="comma-separated modes run alternately each repeat: hook (the daemon's), rounds (once a second "
        "only, the writer checkpointing itself at wal_autocheckpoint: before the WAL-restart change) or off",
    )
    parser.add_argument(
        "--rounds-per-restart",
        type=int,
        default=checkpoint.ROUNDS_PER_RESTART,
        help="with the hook: rounds the commits ask for between two restarts of the WAL, at most",
    )
    args = parser.parse_args()
    checkpoint.ROUNDS_PER_RESTART = args.rounds_per_restart
    if args.quick:
        args.batches, args.repeats = 5, 1
    with tempfile.TemporaryDirectory() as scratch:
        modes = args.checkpointer.split(",")
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            for index, mode in enumerate(modes):
                salt = os.getpid() + repeat * len(modes) + index  # fresh trace ids: no run rewrites another's
                batches = prepared_batches(args.batches, args.requests_per_batch, args.spans_per_request, salt)
                # without --db a fresh file each run: a file that earlier runs grew would favour the first mode
                path = args.db or Path(scratch) / f"writer-{repeat}-{mode}.db"
                runs[mode].append(run(path, batches, args.flush_every, mode))
    batch_spans = args.requests_per_batch * args.spans_per_request
    for mode, each in runs.items():
        report_best(
            each,
            f"checkpointer {mode}: µs of writer-thread CPU per span (best of {len(each)}; {batch_spans} spans a "
            "batch; wall and written too)",
        )


def report_best(runs: list[dict[str, float]], heading: str) -> None:
    """Each stage's best of the runs and every run's figure, then all of it as a JSON line."""
    best = {stage: min(each[stage] for each in runs) for stage in runs[0]}
    print(heading)
    for stage, value in best.items():
        print(f"  {stage:20} {value:8.1f}   runs: {', '.join(f'{each[stage]:.1f}' for each in runs)}")
    print(json.dumps({"best": best, "runs": runs, "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
