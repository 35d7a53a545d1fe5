"""The ingest workers alone: their CPU per span and how they share it, without the writer.

    .venv/bin/python bench/workers.py -p http-protobuf -p grpc      # 8 s each, 2 workers
    .venv/bin/python bench/workers.py --workers 3 -d 20 -p grpc
    .venv/bin/python bench/workers.py --quick                       # a second, a small load (the CI smoke)

Starts ``IngestWorkers`` (real worker processes on port 0, real receivers) over a pipeline that commits every
submission at once, then points ``bench/ingest.py max --endpoint/--grpc-target`` at them (8 clients, 100 spans per
request, its corpus). Over the steady window (from 2 s after the first spans to the last) it prints the workers'
CPU (from /proc) per span and each worker's share of it: what the workers cost, whatever the writer does, which
is the figure to compare between two commits in one session (alternated) on a machine others load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench import ROOT
from bench.daemon import proc_cpu_seconds
from collector.auth.failures import FailureTable
from collector.component import Deadline
from collector.config import load_settings
from collector.model import Records
from collector.workers.metrics import WorkerCounters
from collector.workers.pool import IngestWorkers

SETTLE = 2.0  # seconds after the first spans before the window opens
QUICK_LOAD = ("-c", "2", "-n", "20", "--templates", "4", "--warmup", "0.3", "--reference-seconds", "0.1")


class Committed:
    """The ``Pipeline`` surface ``IngestWorkers`` uses, committing every submission at once."""

    held_spans = 0

    def __init__(self) -> None:
        self.spans = 0

    def submit(self, records: Records) -> asyncio.Future[None]:
        self.spans += records.count
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        committed.set_result(None)
        return committed


async def measure(
    protocol: str, workers: int, seconds: float, settle: float = SETTLE, load_arguments: Sequence[str] = ()
) -> dict[str, object]:
    settings = load_settings(
        {
            "db": str(Path(tempfile.mkdtemp(prefix="genai-bench-workers-")) / "unused.db"),
            "ingest": {"workers": workers},
            "http_endpoint": "127.0.0.1:0",
            "grpc_endpoint": "127.0.0.1:0",
        }
    )
    pipeline = Committed()
    pool = IngestWorkers(settings, pipeline, WorkerCounters(), FailureTable.create())  # type: ignore[arg-type]
    await pool.start()
    try:
        pids = [worker.process.pid for worker in pool._workers if worker.process is not None]
        target = (
            ["--grpc-target", f"127.0.0.1:{pool.ports['otlp_grpc']}"]
            if protocol == "grpc"
            else ["--endpoint", f"http://127.0.0.1:{pool.ports['otlp_http']}"]
        )
        load = subprocess.Popen(  # noqa: ASYNC220 (a few ms, before the window)
            [
                *(sys.executable, "bench/ingest.py", "max", "-p", protocol, "-d", str(seconds + settle + 2)),
                *target,
                *load_arguments,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        samples: list[tuple[float, int, list[float]]] = []
        while load.poll() is None:
            await asyncio.sleep(0.25)
            samples.append((time.monotonic(), pipeline.spans, [proc_cpu_seconds(pid, children=False) for pid in pids]))
    finally:
        await pool.stop(Deadline.after(5))
    busy = [sample for sample in samples if sample[1] > 0]
    if not busy:
        raise SystemExit(f"{protocol}: no spans reached the workers")
    first = next((sample for sample in busy if sample[0] >= busy[0][0] + settle), busy[0])
    last = next(sample for sample in busy if sample[1] == busy[-1][1])  # the last that brought spans
    spans = last[1] - first[1]
    cpu = [after - before for before, after in zip(first[2], last[2], strict=True)]
    return {
        "protocol": protocol,
        "workers": workers,
        "seconds": round(last[0] - first[0], 1),
        "spans_per_s": round(spans / (last[0] - first[0])),
        "worker_us_per_span": round(sum(cpu) / spans * 1e6, 1),
        "shares": [round(share / sum(cpu), 2) for share in cpu],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--protocol", action="append", choices=("http-protobuf", "http-json", "grpc"))
    parser.add_argument("-d", "--duration", type=float, default=8.0, help="seconds measured per protocol (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="HTTP protobuf for about a second, a small load")
    args = parser.parse_args(argv)
    protocols = ["http-protobuf"] if args.quick else args.protocol or ["http-protobuf", "grpc"]
    for protocol in protocols:
        if args.quick:
            result = asyncio.run(measure(protocol, args.workers, 1.0, 0.5, QUICK_LOAD))
        else:
            result = asyncio.run(measure(protocol, args.workers, args.duration))
        shares = " / ".join(f"{share:.0%}" for share in result["shares"])  # type: ignore[attr-defined]
        print(
            f"{protocol:14s} {result['spans_per_s']:>7,} spans/s  workers {result['worker_us_per_span']:6.1f} µs CPU "
            f"per span  shares {shares}",
            file=sys.stderr,
        )
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
