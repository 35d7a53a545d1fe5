"""Redaction micro-benchmark: the cost of the transform step per span on the ingest benchmark's corpus,
and the redaction engine's throughput in MB/s on normal and adversarial text.

    .venv/bin/python bench/redaction.py              # the figures, as a table and one JSON line
    .venv/bin/python bench/redaction.py --quick      # smaller inputs (what tests/test_bench_smoke.py runs)

The spans are the ingest benchmark's own (``bench/ingest.py`` ``build_templates``), decoded before the
clock starts; only ``Transform.spans`` (normalize, price, redact, limit) is timed, with the collector's
default settings, then again with redaction off: the difference is what redaction costs per span.
It only uses ``Transform``, ``Redactor`` and ``decode_spans``, so it runs against an older checkout too
(``PYTHONPATH=/tmp/before .venv/bin/python bench/redaction.py`` times the code at that commit).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run by its path: bench/ is sys.path[0]
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.traces import PII, WORDS, build_templates
from collector.config import RedactionSettings, Settings
from collector.genai.redact import Redactor
from collector.genai.transform import Transform
from collector.model import Span
from collector.otlp import decode_spans, parse_protobuf


def corpus_spans(requests: int, spans_per_request: int) -> list[Span]:
    """The ingest benchmark's requests, decoded as the receiver would."""
    spans: list[Span] = []
    for template in build_templates(requests, spans_per_request, "http-protobuf"):
        decoded, _ = decode_spans(parse_protobuf(template.body, ExportTraceServiceRequest))
        spans.extend(decoded)
    return spans


def best_of(repeats: int, run: Callable[[], Any]) -> float:
    """The fastest of ``repeats`` runs, in CPU seconds of this process: the least disturbed by others."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def microseconds_per_span(spans: list[Span], settings: Settings, repeats: int) -> float:
    transform = Transform(settings)
    transform.spans(spans)  # warm the per-key caches, as a running collector has
    return best_of(repeats, lambda: transform.spans(spans)) / len(spans) * 1e6


def normal_text(size: int, seed: int = 7) -> str:
    """Prose of the ingest corpus's words with an e-mail address or phone number every ~2 KB."""
    rng = random.Random(seed)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS) if rng.random() > 1 / 300 else rng.choice(PII).format(n=rng.randrange(100))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def adversarial_texts(size: int) -> dict[str, str]:
    """Shapes that make a careless engine backtrack or rescan: dense matches and near-misses."""

    def fill(unit: str) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    addresses = " ".join(f"u{n}@ex{n % 97}.io" for n in range(size // 8))[:size]
    return {
        "e-mail addresses, dense": addresses,
        "near-miss e-mail (a@a@a@...)": fill("a@"),
        "long dotted domain": "a@" + fill("b."),
        "digits and separators": fill("4111 1111 1111 1112 "),
        "phone-like runs": fill("+1 (415) 555-01"),
        "token prefixes (sk-, eyJ, AKIA)": fill("sk-eyJAKIA"),
        "one long token": "sk-" + fill("a"),
        "colons and hex (IPv6-like)": fill("fe80:ab:"),
        "query strings": fill("?token=&api_key="),
    }


def throughput_mb_s(redactor: Redactor, text: str, repeats: int) -> float:
    size = len(text.encode())
    return size / best_of(repeats, lambda: redactor.value(text)) / 1e6


def addresses_case(count: int) -> tuple[int, float]:
    """Issue 9's case: a prompt of ``count`` short e-mail addresses; its size and the seconds to redact it."""
    text = " ".join(f"u{n}@x.io" for n in range(count))
    return len(text.encode()), best_of(1, lambda: Redactor(RedactionSettings()).value(text))


def run(quick: bool) -> dict[str, Any]:
    requests, per_request, repeats = (4, 50, 2) if quick else (16, 100, 5)
    size = 64 * 1024 if quick else 1024 * 1024
    adversarial_size = 16 * 1024 if quick else 256 * 1024  # the quadratic engine took minutes at 1 MB
    spans = corpus_spans(requests, per_request)
    on = microseconds_per_span(spans, Settings(), repeats)
    off = microseconds_per_span(spans, Settings.model_validate({"redaction": {"enabled": False}}), repeats)
    redactor = Redactor(RedactionSettings())
    figures: dict[str, Any] = {
        "spans": len(spans),
        "transform_us_per_span": round(on, 1),
        "transform_us_per_span_redaction_off": round(off, 1),
        "redaction_us_per_span": round(on - off, 1),
        "normal_mb_s": round(throughput_mb_s(redactor, normal_text(size), repeats), 2),
        "adversarial_mb_s": {
            name: round(throughput_mb_s(redactor, text, 1), 2)
            for name, text in adversarial_texts(adversarial_size).items()
        },
    }
    count = 4_000 if quick else 40_000
    size_bytes, seconds = addresses_case(count)
    figures["addresses"] = {"count": count, "bytes": size_bytes, "seconds": round(seconds, 3)}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, a few seconds")
    args = parser.parse_args(argv)
    figures = run(args.quick)
    print(
        f"transform per span ({figures['spans']} corpus spans): {figures['transform_us_per_span']} µs, "
        f"{figures['transform_us_per_span_redaction_off']} µs with redaction off "
        f"-> redaction {figures['redaction_us_per_span']} µs per span"
    )
    print(f"normal text: {figures['normal_mb_s']} MB/s")
    for name, rate in figures["adversarial_mb_s"].items():
        print(f"adversarial, {name}: {rate} MB/s")
    addresses = figures["addresses"]
    print(f"{addresses['count']} e-mail addresses ({addresses['bytes']} bytes): {addresses['seconds']} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
