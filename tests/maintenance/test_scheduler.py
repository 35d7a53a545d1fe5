"""The maintenance scheduler with real jobs on a real pipeline: settling and retention run on the writer
thread at their intervals (with SQLite a settling round in two calls, a batch between them), each run is measured,
and a failing job is counted without stopping the others."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector.component import Deadline
from collector.config import Settings
from collector.maintenance.retention import RetentionJob
from collector.maintenance.scheduler import Scheduler
from collector.maintenance.settle import Settled, SettleJob
from collector.model import Records
from collector.observability.metrics import CollectorMetrics
from collector.otlp import decode_spans
from collector.pipeline import Pipeline
from collector.storage.errors import StorageUnavailable
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import metric_value, otlp_request, wait_until

SETTINGS = Settings.model_validate(
    {"snapshots": {"settle_after": "0s", "interval": "50ms"}, "retention": {"max_age": "1h", "interval": "50ms"}}
)


class Counting:
    """A job that counts its rounds on the thread that runs them."""

    def __init__(
        self, name: str, interval: float = 0.02, *, fails: bool = False, behind: int = 0, later: float | None = None
    ) -> None:
        """``behind``: rounds that report more to do; ``later``: the interval from the first round on."""
        self.name, self.interval, self.fails, self.behind, self.later = name, interval, fails, behind, later
        self.rounds = 0
        self.threads: set[str] = set()

    def run(self) -> bool:
        self.rounds += 1
        self.interval = self.later or self.interval
        self.threads.add(threading.current_thread().name)
        if self.fails:
            raise RuntimeError(f"{self.name} broke")
        return self.rounds <= self.behind


class Running:
    def __init__(self, tmp_path: Path, *jobs: object, add_real_jobs: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics(self.registry)
        self.writer = SpanWriter(tmp_path / "maintenance.db", retention=SETTINGS.retention)
        self.metrics.watch_retention(None, lambda: None)
        self.settled: list[str] = []
        self.scheduler = Scheduler(self.metrics)
        if add_real_jobs:
            self.scheduler.add(RetentionJob(self.writer, SETTINGS.retention, self.metrics))
            self.scheduler.add(SettleJob(self.writer, SETTINGS.snapshots, self.metrics, self._observe))
        for job in jobs:
            self.scheduler.add(job)  # type: ignore[arg-type]
        self.pipeline = Pipeline(
            self.writer, self.metrics, capacity=100, batch_size=100, batch_max_age=0.01, between_batches=self.scheduler
        )
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.scheduler.start())
        self.pipeline.start()

    def _observe(self, settled: list[Settled]) -> None:
        self.settled.extend(each.figures.trace_id for each in settled)

    def submit(self, records: Records) -> None:
        async def submit() -> None:
            await self.pipeline.submit(records)

        self.loop.run_until_complete(submit())

    def value(self, sample: str, **labels: str) -> float:
        return metric_value(generate_latest(self.registry).decode(), sample, **labels)

    def close(self) -> None:
        assert self.pipeline.close(10)
        self.loop.run_until_complete(self.scheduler.stop(Deadline(0.0)))
        self.loop.close()
        self.writer.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    started = Running(tmp_path, add_real_jobs=True)
    yield started
    started.close()


def test_settling_and_retention_run_on_the_writer_thread_and_are_measured(running: Running) -> None:
    spans, _ = decode_spans(otlp_request(3))
    running.submit(Records(spans=spans))
    wait_until(lambda: running.settled, 10.0, "the trace settled")
    assert running.settled == [spans[0].trace_id]
    assert running.value("genai_collector_settled_traces_total") == 1
    assert running.writer.connection.execute("SELECT count(*) FROM metric_snapshots").fetchall() == [(2,)]
    for job in ("retention", "settle"):
        wait_until(
            lambda job=job: running.value("genai_collector_maintenance_duration_seconds_count", job_name=job) >= 2,
            10.0,
            f"two rounds of {job}",
        )
        assert running.value("genai_collector_maintenance_last_run_timestamp_seconds", job_name=job) > 0
        assert running.value("genai_collector_maintenance_errors_total", job_name=job) == 0


def test_with_sqlite_a_round_is_two_calls_and_a_trace_that_got_a_span_between_them_waits(tmp_path: Path) -> None:
    """The first call reads and judges the traces due and asks to run again after the next batch; the second writes
    what was read, but for a trace that got a span between the two, which settles in a later round with it."""
    writer = SpanWriter(tmp_path / "rounds.db")
    settled: list[str] = []
    job = SettleJob(
        writer,
        SETTINGS.snapshots,
        CollectorMetrics(CollectorRegistry()),
        lambda done: settled.extend(each.figures.trace_id for each in done),
    )
    spans, _ = decode_spans(otlp_request(3))
    other, _ = decode_spans(otlp_request(2))
    writer.write([Records(spans=spans), Records(spans=other)])
    assert job.run() is True  # read: the two are due
    assert settled == [] and writer.connection.execute("SELECT count(*) FROM metric_snapshots").fetchall() == [(0,)]
    late, _ = decode_spans(otlp_request(1))
    writer.write([Records(spans=[late[0]._replace(trace_id=spans[0].trace_id)])])  # the batch between the two
    assert job.run() is False
    assert settled == [other[0].trace_id]
    assert job.run() is True and job.run() is False  # quiet again: read, then written with its late span
    assert settled == [other[0].trace_id, spans[0].trace_id]
    ((span_count,),) = writer.connection.execute(
        "SELECT span_count FROM traces WHERE trace_id = ?", (spans[0].trace_id,)
    )
    assert span_count == 4
    writer.close()


def test_a_failing_job_is_counted_and_the_others_keep_running(tmp_path: Path) -> None:
    broken, healthy = Counting("broken", fails=True), Counting("healthy")
    running = Running(tmp_path, broken, healthy)
    try:
        wait_until(lambda: healthy.rounds >= 3 and broken.rounds >= 3, 10.0, "three rounds of each job")
        spans, _ = decode_spans(otlp_request(2))
        running.submit(Records(spans=spans))  # the pipeline keeps committing too
        assert running.value("genai_collector_maintenance_errors_total", job_name="broken") >= 3
        assert running.value("genai_collector_maintenance_errors_total", job_name="healthy") == 0
        assert running.value("genai_collector_maintenance_duration_seconds_count", job_name="broken") >= 3
        assert running.pipeline.healthy
    finally:
        running.close()
    assert broken.threads == healthy.threads == {"span-writer"}  # the thread that owns the write connection


def test_a_job_that_is_behind_runs_again_without_waiting_for_its_interval(tmp_path: Path) -> None:
    behind = Counting("behind", interval=0.02, behind=4, later=3600.0)
    running = Running(tmp_path, behind)
    try:
        wait_until(lambda: behind.rounds == 5, 10.0, "the rounds it was behind, then one more")
        assert running.value("genai_collector_maintenance_duration_seconds_count", job_name="behind") == 5
    finally:
        running.close()
    assert behind.rounds == 5  # caught up: next round in an hour


def test_a_stopped_scheduler_runs_nothing(tmp_path: Path) -> None:
    job = Counting("quick")
    running = Running(tmp_path, job)
    running.loop.run_until_complete(running.scheduler.stop(Deadline(0.0)))
    assert running.scheduler.due_at() == float("inf")
    rounds = job.rounds
    spans, _ = decode_spans(otlp_request(1))
    running.submit(Records(spans=spans))
    assert job.rounds == rounds
    running.close()


def test_jobs_due_together_take_turns_one_per_call_the_longest_due_first() -> None:
    """So that a batch commits between two jobs instead of waiting behind all of them; an ``every_call`` job (the
    database probe) runs whenever due, ahead of them, and does not take a turn."""
    scheduler = Scheduler(CollectorMetrics(CollectorRegistry()))
    first, second, third, probe = (Counting(name, 60) for name in ("first", "second", "third", "probe"))
    for job in (first, second, third):
        scheduler.add(job)
    scheduler.add(probe, every_call=True)
    asyncio.run(scheduler.start())
    scheduler._due = {"first": 2.0, "second": 1.0, "third": 3.0, "probe": 4.0}  # all due; second the longest
    scheduler.run_due()
    assert (first.rounds, second.rounds, third.rounds, probe.rounds) == (0, 1, 0, 1)
    scheduler.run_due()
    assert (first.rounds, second.rounds, third.rounds, probe.rounds) == (1, 1, 0, 1)
    scheduler._due["probe"] = 0.0
    scheduler.run_due()
    scheduler.run_due()  # nothing due now: the next rounds are a minute away
    assert (first.rounds, second.rounds, third.rounds, probe.rounds) == (1, 1, 1, 2)


def test_a_job_is_registered_once() -> None:
    scheduler = Scheduler(CollectorMetrics(CollectorRegistry()))
    scheduler.add(Counting("settle"))
    with pytest.raises(ValueError, match="already registered"):
        scheduler.add(Counting("settle"))


class Unavailable(Counting):
    """A job whose store is away for its first ``away`` rounds."""

    def __init__(self, away: int) -> None:
        super().__init__("away", interval=0.01)
        self.away = away

    def run(self) -> bool:
        super().run()
        if self.rounds <= self.away:
            raise StorageUnavailable("connection refused", kind="08006")
        return False


def test_a_store_away_is_one_outage_in_the_log_not_a_line_per_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collector.maintenance.scheduler")
    job = Unavailable(away=5)
    running = Running(tmp_path, job)
    try:
        wait_until(lambda: job.rounds >= 7, 10.0, "the rounds while away, then two more")
        assert running.value("genai_collector_maintenance_errors_total", job_name="away") == 5
        assert running.value("genai_collector_write_failures_total", error="08006") == 5
    finally:
        running.close()
    lines = [(record.levelname, re.sub(r"\d+ s\b", "N s", record.getMessage())) for record in caplog.records]
    assert lines == [
        ("WARNING", "the store (periodic job away) unreachable, trying again: connection refused"),
        ("INFO", "the store (periodic job away) reachable again after N s"),
    ]
