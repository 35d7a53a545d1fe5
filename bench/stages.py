"""The ingest threads' work per span, stage by stage, on the ingest benchmark's corpus.

    .venv/bin/python bench/stages.py                       # every stage: CPU µs per span, best of 5, and a JSON line
    .venv/bin/python bench/stages.py decode transform      # some of them
    .venv/bin/python bench/stages.py --quick               # one run each (what tests/test_bench_smoke.py runs)
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \\
        --toggle-collect=functools_reduce .venv/bin/python bench/stages.py --once transform

The stages are what an ingest thread (or worker process) does with a request's body: ``parse`` (protobuf),
``decode`` (to spans), ``transform`` (redact, normalize, price, limit), ``rows`` (the storage engine's
encoding, ``records_preparer``), ``summarize``; ``json-parse`` and ``json-decode`` for OTLP/JSON; ``ingest``
and ``json-ingest`` all of them in a row. The corpus is ``bench/ingest.py``'s own requests, 4 of 100 spans.

``--once`` runs each stage once after a warm-up, inside ``functools.reduce``, so that callgrind told to
collect only there (the command above) counts the instructions of that run alone: divide by 400 spans.
Instruction counts do not move with the load of other processes, as CPU time on a shared machine does.
Run with ``PYTHONPATH`` at an older checkout to count the code there.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.redaction import best_of
from bench.traces import build_templates
from collector.config import Settings
from collector.genai.transform import Transform
from collector.model import Records, Span
from collector.otlp import (
    decode_json_spans,
    decode_spans,
    parse_json_traces,
    parse_otlp_protobuf,
    without_conflicting_duplicates,
)
from collector.storage.engines import records_preparer

REQUESTS = 4
SPANS_PER_REQUEST = 100


def stages() -> dict[str, Callable[[], object]]:
    """Each stage as a function of no arguments that runs it over the whole corpus."""
    bodies = [template.body for template in build_templates(REQUESTS, SPANS_PER_REQUEST, "http-protobuf")]
    json_bodies = [template.body for template in build_templates(REQUESTS, SPANS_PER_REQUEST, "http-json")]
    requests = [parse_otlp_protobuf(body, ExportTraceServiceRequest)[0] for body in bodies]
    documents = [parse_json_traces(body) for body in json_bodies]
    decoded = [without_conflicting_duplicates(decode_spans(request)[0])[0] for request in requests]
    transform = Transform(Settings())
    prepare = records_preparer("stages.db")  # the SQLite engine's, by the name's scheme; nothing is opened
    transformed = [transform.spans(spans)[0] for spans in decoded]

    def rows() -> None:
        for records in transformed:
            records.prepared = None
            prepare(records)

    def summarize() -> None:
        for records in transformed:
            records.summaries = None
            records.summarize()

    def rest(spans: list[Span]) -> Records:
        records = prepare(transform.spans(without_conflicting_duplicates(spans)[0])[0])
        records.summarize()
        return records

    return {
        "parse": lambda: [parse_otlp_protobuf(body, ExportTraceServiceRequest) for body in bodies],
        "decode": lambda: [decode_spans(request) for request in requests],
        "transform": lambda: [transform.spans(spans) for spans in decoded],
        "rows": rows,
        "summarize": summarize,
        "json-parse": lambda: [parse_json_traces(body) for body in json_bodies],
        "json-decode": lambda: [decode_json_spans(document) for document in documents],
        "ingest": lambda: [
            rest(decode_spans(parse_otlp_protobuf(body, ExportTraceServiceRequest)[0])[0]) for body in bodies
        ],
        "json-ingest": lambda: [rest(decode_json_spans(parse_json_traces(body))[0]) for body in json_bodies],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", nargs="*", help="stages to run (default: all)")
    parser.add_argument("--once", action="store_true", help="one warmed run of each, inside functools.reduce")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one timed run of each stage")
    options = parser.parse_args()
    runs = stages()
    chosen = options.stage or list(runs)
    unknown = [name for name in chosen if name not in runs]
    if unknown:
        parser.error(f"unknown stage {', '.join(unknown)}; choose from {', '.join(runs)}")
    spans = REQUESTS * SPANS_PER_REQUEST
    figures = {}
    for name in chosen:
        run = runs[name]
        run()  # warm: caches filled as in a running collector
        if options.once:
            functools.reduce(lambda _, __: run(), [0, 0])
            print(f"{name}: one run over {spans} spans")
            continue
        figures[name] = round(best_of(1 if options.quick else options.repeats, run) / spans * 1e6, 2)
        print(f"{name:12} {figures[name]:8.2f} µs per span")
    if figures:
        print(json.dumps({"us_per_span": figures, "spans": spans, "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
