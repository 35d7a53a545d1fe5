"""Hand-off micro-benchmark: what an ingest worker's request costs to send to the main process, per span.

    .venv/bin/python bench/handoff.py              # the figures, as a table and one JSON line
    .venv/bin/python bench/handoff.py --quick      # fewer requests (what tests/test_bench_smoke.py runs)

The requests are the ingest benchmark's own (``bench/ingest.py`` ``build_templates``, 100 spans each), decoded,
transformed with the default settings and encoded (``SpanStore.prepare``) before the clock starts. Two shapes
are timed: what a worker sends (``Records.without_spans``: the rows and one ``SpanSummary`` per span) and the
request with its spans as well, as the workers sent it before the summaries. For each: pickled bytes, CPU to
pickle (the worker) and to unpickle (the main process), and the memory the unpickled request holds in the
main process while it waits in the queue (``tracemalloc``). Best of N runs in process CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import pickle
import resource
import socket
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.redaction import best_of, corpus_spans
from collector.config import Settings
from collector.genai.transform import Transform
from collector.model import Records
from collector.storage.sqlite.writer import prepare
from collector.workers.link import Link, submission, submitted

SPANS_PER_REQUEST = 100


def requests(count: int) -> list[Records]:
    transform = Transform(Settings())
    spans = corpus_spans(count, SPANS_PER_REQUEST)
    batches = [spans[start : start + SPANS_PER_REQUEST] for start in range(0, len(spans), SPANS_PER_REQUEST)]
    prepared = [prepare(transform.spans(batch)[0]) for batch in batches]
    for records in prepared:
        records.summarize()
    return prepared


def _as_is(message: Any) -> Any:
    return message


def figures(messages: list[Any], spans: int, repeats: int, received: Callable[[Any], Any] = _as_is) -> dict[str, float]:
    """``received``: what the main process makes of an unpickled message before it queues its records."""
    payloads = [pickle.dumps(message, protocol=5) for message in messages]
    pickling = best_of(repeats, lambda: [pickle.dumps(message, protocol=5) for message in messages])
    unpickling = best_of(repeats, lambda: [received(pickle.loads(payload)) for payload in payloads])
    gc.collect()
    tracemalloc.start()
    held = [received(pickle.loads(payload)) for payload in payloads]
    held_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return {
        "pickled_bytes_per_span": round(sum(map(len, payloads)) / spans),
        "pickle_us_per_span": round(pickling / spans * 1e6, 2),
        "unpickle_us_per_span": round(unpickling / spans * 1e6, 2),
        "held_bytes_per_span": round(held_bytes / spans),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def channel(corpus: list[Records], rounds: int) -> dict[str, float]:
    """CPU per span of each end of a ``Link`` (socket pair, forked sender) that carries ``corpus`` ``rounds`` times."""
    ours, theirs = socket.socketpair()
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker's end
        ours.close()

        async def send() -> None:
            link = await Link.open(theirs)
            start = _cpu_seconds()
            for _ in range(rounds):
                for index, records in enumerate(corpus):
                    link.send(submission(index, records))
                await link.flush()
            os.write(report_write, repr(_cpu_seconds() - start).encode())
            link.close()

        asyncio.run(send())
        os._exit(0)
    theirs.close()

    async def receive() -> int:
        link = await Link.open(ours)
        spans = 0
        while (message := await link.receive()) is not None:
            spans += len(submitted(message).summaries or ())
        return spans

    start = _cpu_seconds()
    spans = asyncio.run(receive())
    receiving = _cpu_seconds() - start
    os.waitpid(pid, 0)
    sending = float(os.read(report_read, 64))
    return {
        "spans": spans,
        "send_us_per_span": round(sending / spans * 1e6, 2),
        "receive_us_per_span": round(receiving / spans * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    parser.add_argument("--channel", type=int, metavar="ROUNDS", help="also send the corpus ROUNDS times over a Link")
    args = parser.parse_args(argv)
    corpus = requests(5 if args.quick else 40)
    spans = sum(len(records.spans) for records in corpus)
    repeats = 2 if args.quick else 7
    shapes = {
        "rows_and_summaries": [submission(index, records) for index, records in enumerate(corpus)],
        "summaries_as_named_tuples": [
            ("submit", index, records.without_spans()) for index, records in enumerate(corpus)
        ],
        "with_spans": [("submit", index, records) for index, records in enumerate(corpus)],
    }
    results: dict[str, Any] = {"spans": spans, "requests": len(corpus)}
    print(f"{spans:,} spans in {len(corpus)} requests of the ingest benchmark's corpus, best of {repeats}")
    print(f"{'shape':26s} {'bytes/span':>10s} {'pickle µs':>10s} {'unpickle µs':>12s} {'held bytes/span':>16s}")
    for name, messages in shapes.items():
        shape = results[name] = figures(messages, spans, repeats, submitted if name == "rows_and_summaries" else _as_is)
        print(
            f"{name:26s} {shape['pickled_bytes_per_span']:10,} {shape['pickle_us_per_span']:10.2f} "
            f"{shape['unpickle_us_per_span']:12.2f} {shape['held_bytes_per_span']:16,}"
        )
    if args.channel:
        sent = results["channel"] = channel(corpus, args.channel)
        print(
            f"over a Link, {sent['spans']:,} spans: sending {sent['send_us_per_span']:.2f} µs CPU per span, "
            f"receiving {sent['receive_us_per_span']:.2f}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
