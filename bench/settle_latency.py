"""The acknowledgement latency settling leaves, in one process: the writer thread's ``Pipeline`` and ``SpanWriter``
fed the ingest benchmark's requests at a fixed rate, with the maintenance jobs of the daemon (retention, the latency
histograms' flush, settling with ``settle_after`` short enough to settle in the window), settling a round in two
steps with a batch between them (``steps``: the daemon with SQLite) or whole (``whole``: one step, as before). The
two are alternated in one run, so that the machine's other load falls on both; each run prints the p50/p99/max from
submit to commit, the mean commit of a batch and the mean step of each job on the writer thread (a settling round is
two steps in ``steps``).

    .venv/bin/python bench/settle_latency.py                  # 3,000 spans/s, 10 s a run, each mode 4 times
    .venv/bin/python bench/settle_latency.py --rate 2000 --rounds 6
    .venv/bin/python bench/settle_latency.py --quick          # tests/test_bench_smoke.py runs it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench.writer import prepared_batches
from collector.component import Deadline
from collector.config import Settings
from collector.maintenance.flush import FlushJob
from collector.maintenance.retention import RetentionJob
from collector.maintenance.scheduler import Scheduler
from collector.maintenance.settle import Settled, SettleJob
from collector.model import Records
from collector.observability.metrics import CollectorMetrics
from collector.pipeline import Pipeline
from collector.storage.sqlite.writer import SpanWriter

SPANS_PER_REQUEST = 100


async def run(db: Path, mode: str, requests: list[Records], rate: float) -> dict[str, float]:
    settings = Settings.model_validate({"snapshots": {"settle_after": "1s"}})
    metrics = CollectorMetrics(CollectorRegistry())
    metrics.watch_retention(None, lambda: None)
    writer = SpanWriter(db, retention=settings.retention)
    scheduler = Scheduler(metrics)
    scheduler.add(RetentionJob(writer, settings.retention, metrics))

    def observe(settled: list[Settled]) -> None:
        pass

    settling = SettleJob(writer, settings.snapshots, metrics, observe)
    if mode == "whole":
        settling._reader = None  # as a store that cannot read ahead: the round in one step
    scheduler.add(settling)
    scheduler.add(FlushJob(writer))
    pipeline = Pipeline(
        writer,
        metrics,
        capacity=settings.queue_capacity,
        batch_size=settings.batch_size,
        batch_max_age=settings.batch_max_age,
        between_batches=scheduler,
    )
    await scheduler.start()
    pipeline.start()
    latencies: list[float] = []
    slowest: list[tuple[float, float]] = []

    async def send(records: Records) -> None:
        started = time.perf_counter()
        await pipeline.submit(records)
        latencies.append(time.perf_counter() - started)
        slowest.append((latencies[-1], started - began))

    tasks = []
    began = time.perf_counter()
    cpu = time.process_time()
    for index, records in enumerate(requests):
        delay = began + index * SPANS_PER_REQUEST / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(records)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    await asyncio.to_thread(pipeline.close, 30)
    await scheduler.stop(Deadline.after(1))
    writer.close()
    latencies.sort()
    figures = {
        "spans/s": len(requests) * SPANS_PER_REQUEST / elapsed,
        "p50 ms": latencies[len(latencies) // 2] * 1e3,
        "p99 ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "max ms": latencies[-1] * 1e3,
        "CPU s/10k spans": cpu / (len(requests) * SPANS_PER_REQUEST) * 1e4,
    }
    commits = {s.name: s.value for s in metrics.commit_duration.collect()[0].samples}
    figures["commit mean ms"] = (
        commits["genai_collector_commit_duration_seconds_sum"]
        / max(1, commits["genai_collector_commit_duration_seconds_count"])
        * 1e3
    )
    figures["slowest at s"] = max(slowest)[1]
    figures["settled traces"] = next(
        sample.value for sample in metrics.settled_traces.collect()[0].samples if sample.name.endswith("_total")
    )
    for job in ("settle", "retention", "flush"):
        samples = {
            sample.name: sample.value for sample in metrics.maintenance_duration.labels(job).collect()[0].samples
        }
        count = samples.get("genai_collector_maintenance_duration_seconds_count", 0)
        if count:
            figures[f"{job} mean ms"] = samples["genai_collector_maintenance_duration_seconds_sum"] / count * 1e3
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=3000, help="spans/s offered")
    parser.add_argument("--duration", type=float, default=10, help="seconds a run")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each mode, alternated")
    parser.add_argument("--quick", action="store_true", help="1,000 spans/s, 3 s, one run of each")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.duration, args.rounds = 1000, 3, 1
    count = int(args.rate * args.duration / SPANS_PER_REQUEST)
    results: list[tuple[str, dict[str, float]]] = []
    for _ in range(args.rounds):
        for mode in ("steps", "whole"):
            batches = prepared_batches(count // 4 + 1, 4, SPANS_PER_REQUEST, os.getpid() * 100 + len(results))
            requests = [records for batch in batches for records in batch][:count]
            load = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as scratch:
                figures = asyncio.run(run(Path(scratch) / "latency.db", mode, requests, args.rate))
            figures["load average"] = load
            results.append((mode, figures))
            print(f"{mode:7} " + "  ".join(f"{name} {value:,.1f}" for name, value in figures.items()), flush=True)
    for mode in ("steps", "whole"):
        p99 = [figures["p99 ms"] for each, figures in results if each == mode]
        print(f"{mode}: p99 ms {', '.join(f'{value:.0f}' for value in p99)} (median {statistics.median(p99):.0f})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
