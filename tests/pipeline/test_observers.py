"""The observer thread: committed batches observed in commit order off the writer thread, a stalled observer
neither holding the writer up nor growing memory (its overflow dropped and counted), and a scrape of
``/metrics`` showing every batch acknowledged before it."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.component import Deadline
from collector.model import Records
from collector.observability.metrics import CollectorMetrics
from collector.otlp import decode_spans
from collector.pipeline import Observers, Pipeline
from collector.storage.sqlite.writer import SpanWriter
from collector.storage.store import Written
from tests.helpers import metric_value, otlp_request, scrape, wait_until


class Started:
    def __init__(self, capacity: int) -> None:
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics(self.registry)
        self.observers = Observers(self.metrics.dropped_observations, capacity)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.observers.start())

    def dropped(self) -> float:
        return metric_value(generate_latest(self.registry).decode(), "genai_collector_dropped_observations_total")

    def close(self) -> None:
        self.loop.run_until_complete(self.observers.stop(Deadline(self.loop.time() + 10)))
        self.loop.close()


@pytest.fixture
def started() -> Iterator[Started]:
    running = Started(capacity=10)
    yield running
    running.close()


def test_observations_run_in_the_order_submitted_on_the_observer_thread() -> None:
    running = Started(capacity=50)
    seen: list[tuple[int, str]] = []

    def observe(index: int) -> None:
        seen.append((index, threading.current_thread().name))

    try:
        for index in range(50):
            running.observers.submit(functools.partial(observe, index), 1)
        assert running.observers.caught_up(10)
    finally:
        running.close()
    assert seen == [(index, "commit-observer") for index in range(50)]
    assert running.dropped() == 0


def test_a_stalled_observer_keeps_at_most_capacity_items_and_counts_what_it_drops(started: Started) -> None:
    release = threading.Event()
    seen: list[int] = []
    started.observers.submit(lambda: release.wait(30) and None, 4)  # taken by the thread, still held until it ends
    wait_until(lambda: not started.observers._waiting, 10, "the thread to take the stalled observation")
    for index in range(5):  # 4 + 3 + 3 fit in 10; the other three do not
        started.observers.submit(functools.partial(seen.append, index), 3)
    assert started.observers.held == 10
    assert started.dropped() == 9
    assert not started.observers.caught_up(0.05)  # the stalled one holds the rest back
    release.set()
    assert started.observers.caught_up(10)
    assert seen == [0, 1]
    assert started.observers.held == 0
    started.observers.submit(functools.partial(seen.append, 5), 30)  # larger than the queue, taken when it is empty
    assert started.observers.caught_up(10)
    assert seen == [0, 1, 5]


def test_an_observation_that_fails_is_logged_and_the_next_still_runs(
    started: Started, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def broken() -> None:
        raise RuntimeError("observer broke")

    started.observers.submit(broken, 1)
    started.observers.submit(functools.partial(seen.append, 1), 1)
    with caplog.at_level(logging.ERROR):
        assert started.observers.caught_up(10)
    assert seen == [1]
    assert "observer broke" in caplog.text


def test_stop_runs_what_is_queued_and_later_submissions_are_dropped() -> None:
    running = Started(capacity=100)
    release = threading.Event()
    seen: list[int] = []
    running.observers.submit(lambda: release.wait(30) and None, 1)
    for index in range(3):
        running.observers.submit(functools.partial(seen.append, index), 1)
    release.set()
    running.close()
    assert seen == [0, 1, 2]
    running.observers.submit(functools.partial(seen.append, 3), 2)
    assert seen == [0, 1, 2]
    assert running.dropped() == 2


def test_the_writer_acknowledges_and_commits_while_its_observer_is_stalled(started: Started, tmp_path: Path) -> None:
    """The real pipeline and SQLite writer: every request is acknowledged after its commit though the observer
    of the commits is stuck, and the observations that did not fit are counted, not kept."""
    release = threading.Event()
    observed: list[int] = []

    def on_commit(batch: list[Records], written: Written) -> None:
        started.observers.submit(functools.partial(observed.append, len(written.stored)), len(written.stored))

    writer = SpanWriter(tmp_path / "observed.db")
    pipeline = Pipeline(writer, started.metrics, capacity=100, batch_size=5, batch_max_age=0.001, on_commit=on_commit)
    pipeline.start()
    started.observers.submit(lambda: release.wait(30) and None, 1)
    try:

        async def send() -> None:
            for _ in range(6):
                spans, _ = decode_spans(otlp_request(3))
                await pipeline.submit(Records(spans=spans))

        started.loop.run_until_complete(asyncio.wait_for(send(), 30))
        ((stored,),) = writer.connection.execute("SELECT count(*) FROM spans").fetchall()
        assert stored == 18
        assert started.observers.held == 10  # the stalled one and three batches of 3 spans
        assert started.dropped() == 9
        release.set()
        assert started.observers.caught_up(10)
        assert observed == [3, 3, 3]
    finally:
        release.set()
        assert pipeline.close(10)
        writer.close()


def test_a_scrape_shows_every_batch_acknowledged_before_it(start_collector: Any) -> None:
    running = start_collector()
    release = threading.Event()
    running.collector.observers.submit(lambda: release.wait(30) and None, 1)  # the observer thread falls behind
    request = otlp_request(2, attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10})
    answer = httpx.post(
        running.http_url + "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert answer.status_code == 200
    threading.Timer(0.2, release.set).start()  # the scrape waits for the observer, up to a second
    assert metric_value(scrape(running), "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 2
