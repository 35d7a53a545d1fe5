"""Keyset pagination while ingest inserts: every trace stored before paging started is seen exactly once."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import httpx
import pytest

from tests.helpers import otlp_request, wait_until

SECOND = 1_000_000_000


def post_traces(http_url: str, starts_and_durations: list[tuple[int, int]]) -> list[str]:
    """One single-span trace per (start, duration); returns their ids."""
    request = otlp_request(0, service="paging")
    scope = request.resource_spans[0].scope_spans[0]
    ids = []
    for start, duration in starts_and_durations:
        span = scope.spans.add()
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
        span.name = "page me"
        span.start_time_unix_nano = start
        span.end_time_unix_nano = start + duration
        ids.append(span.trace_id.hex())
    response = httpx.post(
        f"{http_url}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return ids


@pytest.mark.parametrize(("sort", "order"), [("start_time", "desc"), ("start_time", "asc"), ("duration", "desc")])
def test_pages_have_no_duplicates_or_gaps_while_ingest_inserts(start_collector: Any, sort: str, order: str) -> None:
    collector = start_collector()
    base = time.time_ns() - 3_600 * SECOND
    rng = random.Random(7)
    # Equal start times and durations in places, so that the tie on the trace id matters.
    existing = set(
        post_traces(
            collector.http_url, [(base + (i // 3) * SECOND, rng.randrange(1, 50) * 1_000_000) for i in range(300)]
        )
    )
    wait_until(lambda: collector.query("SELECT count(*) FROM traces") == [(300,)], timeout=10)

    stop = threading.Event()
    inserted: list[str] = []

    def insert_more() -> None:
        while not stop.is_set():
            inserted.extend(
                post_traces(
                    collector.http_url,
                    [(base + rng.randrange(0, 100) * SECOND, rng.randrange(1, 50) * 1_000_000) for _ in range(5)],
                )
            )
            time.sleep(0.005)

    inserter = threading.Thread(target=insert_more, daemon=True)
    inserter.start()
    seen: list[str] = []
    params: dict[str, Any] = {
        "start": base - SECOND,
        "end": base + 200 * SECOND,
        "sort": sort,
        "order": order,
        "limit": 9,
    }
    try:
        while True:
            page = httpx.get(collector.query_url + "/api/v1/traces", params=params, timeout=10).json()
            seen.extend(item["trace_id"] for item in page["data"])
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
            time.sleep(0.002)
    finally:
        stop.set()
        inserter.join(timeout=10)
    assert inserted, "nothing was inserted while paging"
    assert len(seen) == len(set(seen)), "a trace was returned twice"
    assert existing <= set(seen), f"{len(existing - set(seen))} traces were skipped"
    assert set(seen) <= existing | set(inserted)


def test_a_query_past_the_statement_timeout_is_refused_as_too_broad(start_collector: Any) -> None:
    collector = start_collector(query={"statement_timeout": "0s"})
    post_traces(collector.http_url, [(time.time_ns() - i * SECOND, 1_000_000) for i in range(2_000)])
    # buckets of seconds: the stored spans, not the histograms, are read
    response = httpx.get(collector.query_url + "/api/v1/stats/latency", params={"of": "span", "bucket": "10s"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "query_too_broad" and "statement timeout" in error["message"]
    # the reader's connection is still usable afterwards, and ingest was never affected
    ingest = httpx.post(
        f"{collector.http_url}/v1/traces",
        content=otlp_request(3).SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert ingest.status_code == 200
