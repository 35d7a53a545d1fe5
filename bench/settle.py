"""Settling on SQLite alone: the writer thread's CPU per settled trace, stage by stage, a round whole or in two steps.

    .venv/bin/python bench/settle.py            # a fresh database per run in a temporary folder
    .venv/bin/python bench/settle.py --db /var/tmp/copy-of-a-big.db   # writes into it: give it a copy

The ingest benchmark's requests (``bench/writer.py``'s corpus, fresh trace ids each run) are written by a
``SpanWriter``, then every trace is settled in whole rounds (``maintenance.settle.settle``, ``SETTLE_CHUNK`` traces a
transaction, the default rules), with the clock past ``settle_after``. Timed by the thread's CPU time
(``time.thread_time``): ``judge`` is the Python of reading the candidates' figures and evaluating the rules,
``latency`` adding the settled traces to the latency histograms, ``settle and the rest`` the statements that read
the candidates, upsert the snapshots and mark the traces settled, and the transaction; ``whole pause ms`` the longest
round's wall time. Then the same corpus (fresh ids) settled as the daemon does, a round in two steps with a batch
between them (``storage.sqlite.settle``): ``steps: read`` is the CPU per trace of the first (read, judge, bin, merge
ahead), ``steps: write`` of the second (apply the plan), and ``longest step ms`` the longest wall time of one step:
a pause between two batches. Best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.writer import prepared_batches, report_best, timed
from collector.config import Settings
from collector.maintenance import settle as settling
from collector.storage.sqlite import latency, writer

PAST_SETTLE_AFTER_NS = 3600 * 10**9


def run(db: Path, batches: int, salt: int, chunk: int) -> dict[str, float]:
    """µs of CPU per settled trace of each stage, and of the whole settling."""
    store = writer.SpanWriter(db)
    try:
        for batch in prepared_batches(batches, 4, 100, salt):
            store.write(batch)
        store.flush()
        settings = Settings().snapshots
        clock: dict[str, float] = defaultdict(float)
        patched = [
            (latency, "add_traces"),
            (settling, "trace_figures"),
            (settling, "evaluate"),
        ]
        originals = [(module, name, getattr(module, name)) for module, name in patched]
        stages = {"add_traces": "latency", "trace_figures": "judge", "evaluate": "judge"}
        for module, name, function in originals:
            setattr(module, name, timed(clock, stages[name], function))
        settled, pause = 0, 0.0
        now_ns = time.time_ns() + PAST_SETTLE_AFTER_NS
        started = time.thread_time()
        try:
            while True:
                wall = time.perf_counter()
                done = settling.settle(store, settings, limit=chunk, now_ns=now_ns)
                if not done:
                    break
                pause = max(pause, time.perf_counter() - wall)
                settled += len(done)
        finally:
            total = time.thread_time() - started
            for module, name, function in originals:
                setattr(module, name, function)
    finally:
        store.close()
    figures = {stage: seconds / settled * 1e6 for stage, seconds in clock.items()}
    figures["settle and the rest"] = total / settled * 1e6 - sum(figures.values())
    figures["total"] = total / settled * 1e6
    figures["traces"] = settled
    figures["whole pause ms"] = pause * 1e3
    figures.update(run_steps(db, batches, salt + 7919, chunk))  # fresh ids, into the same file
    return {stage: round(value, 1) for stage, value in figures.items()}


def run_steps(db: Path, batches: int, salt: int, chunk: int) -> dict[str, float]:
    """µs of CPU per settled trace of each step (read, write), and the longest step's wall time in ms."""
    store = writer.SpanWriter(db)
    reader = store.settle_reader()
    try:
        for batch in prepared_batches(batches, 4, 100, salt):
            store.write(batch)
        store.flush()
        settings = Settings().snapshots
        now_ns = time.time_ns() + PAST_SETTLE_AFTER_NS
        settled, reading, applying, pause = 0, 0.0, 0.0, 0.0
        while True:
            window, judge, _ = settling._judging(settings, chunk, now_ns)
            started, wall = time.thread_time(), time.perf_counter()
            plan = reader.read(window, judge)
            reading += time.thread_time() - started
            pause = max(pause, time.perf_counter() - wall)
            if plan is None:
                break
            started, wall = time.thread_time(), time.perf_counter()
            settled += len(store.apply_settled(plan))
            applying += time.thread_time() - started
            pause = max(pause, time.perf_counter() - wall)
    finally:
        store.close()
    return {
        "steps: read": reading / settled * 1e6,
        "steps: write": applying / settled * 1e6,
        "longest step ms": pause * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, help="a database to write into (a copy: it grows); default a new one")
    parser.add_argument("--batches", type=int, default=40, help="batches of 400 spans written, then settled")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=settling.SETTLE_CHUNK, help="traces settled per transaction")
    parser.add_argument("--quick", action="store_true", help="5 batches, one run")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.repeats = 5, 1
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            runs.append(run(args.db or Path(scratch) / "settle.db", args.batches, os.getpid() + repeat, args.chunk))
    report_best(runs, f"µs of CPU per settled trace (best of {len(runs)})")


if __name__ == "__main__":
    main()
