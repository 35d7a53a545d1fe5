"""Maintenance jobs (settling traces, retention; later partition upkeep) run at their intervals.

With SQLite the jobs need the write connection, so the scheduler does not run them itself: the pipeline's
writer thread asks it between batches (``Pipeline(between_batches=...)``). A job whose round left more to do
(more traces due than one round settles, more to delete) is due again at once: it runs after the next batch
instead of waiting for its interval, so it keeps up with any ingest rate without holding the batches up. For the
same reason one call runs one job: jobs due together take turns with the batches, but for the database probe,
which runs whenever due (``add(every_call=True)``).

Each job's last run, duration and errors are metrics labelled ``job_name``; a failing job is counted and
logged and never stops the others. While the store is unavailable (PostgreSQL away, a full disk) each job's
failures are one outage in the log (``observability.logs.Outage``: when it begins, once a minute while it
lasts, when it ends), not a line every few seconds.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from collector.component import Deadline
from collector.observability.logs import Outage, rate_limited
from collector.observability.metrics import CollectorMetrics
from collector.storage.errors import StorageError, StorageUnavailable

log = logging.getLogger(__name__)


class Job(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float:
        """Seconds between two rounds while the job keeps up."""
        ...

    def run(self) -> bool:
        """One round; True when more is due than one round does."""
        ...


class Scheduler:
    """The registered jobs and when each is due; a component, started before the pipeline that runs it.

    The first round comes one shortest interval after start and runs every job; after that each job keeps
    its own interval."""

    name = "maintenance"

    def __init__(self, metrics: CollectorMetrics) -> None:
        self._metrics = metrics
        self._jobs: list[Job] = []  # one per call, the longest due first
        self._every_call: list[Job] = []
        self._due: dict[str, float] = {}
        self._outages: dict[str, Outage] = {}
        self._running = False

    def add(self, job: Job, *, every_call: bool = False) -> None:
        """``every_call``: run whenever due, ahead of the one job a call runs (the database probe: one cheap round
        trip that ``/readyz`` reads, which must not wait its turn behind jobs that may each wait out a PostgreSQL
        pool's timeout while the database is away)."""
        if job.name in self._due or self._running:
            raise ValueError(f"job {job.name} is already registered, or the scheduler has started")
        if every_call:
            self._every_call.append(job)
        else:
            self._jobs.append(job)
        self._due[job.name] = math.inf
        self._outages[job.name] = Outage(log, f"the store (periodic job {job.name})")

    async def start(self) -> None:
        if not self._due:
            return
        first = time.monotonic() + min(job.interval for job in (*self._every_call, *self._jobs))
        self._due = dict.fromkeys(self._due, first)
        self._running = True

    async def stop(self, deadline: Deadline) -> None:
        self._running = False

    def due_at(self) -> float:
        return min(self._due.values(), default=math.inf) if self._running else math.inf

    def run_due(self) -> None:
        """On the writer thread: the ``every_call`` jobs that are due, then of the others the job due longest (the
        first added among equals), one per call.

        The jobs share an interval, so they fall due together; run back to back they held the batches waiting
        behind all of them (settle, retention's checkpoint and the histogram flush: ~90 ms a second at half the
        maximum ingest, the p99 acknowledgement 230 ms), while one at a time a batch commits between two jobs.
        The pipeline calls again at once when nothing waits, so an idle writer still runs them in one go."""
        if not self._running:
            return
        now = time.monotonic()
        for job in self._every_call:
            if self._due[job.name] <= now:
                self._round(job, now)
        if self._jobs:
            job = min(self._jobs, key=lambda each: self._due[each.name])
            if self._due[job.name] <= now:
                self._round(job, now)

    def _round(self, job: Job, now: float) -> None:
        self._due[job.name] = now + job.interval
        if self._run(job):
            self._due[job.name] = time.monotonic()  # behind: again right after the next batch

    def _run(self, job: Job) -> bool:
        metrics = self._metrics
        started = time.perf_counter()
        more = False
        try:
            more = job.run()
            self._outages[job.name].reached()
        except StorageUnavailable as failure:
            metrics.maintenance_errors.labels(job.name).inc()
            metrics.write_failures.labels(failure.kind).inc()
            self._outages[job.name].failed(failure)
        except StorageError as failure:
            metrics.maintenance_errors.labels(job.name).inc()
            metrics.write_failures.labels(failure.kind).inc()
            rate_limited(log, logging.ERROR, "periodic database work failed: %s", failure)
        except Exception:
            metrics.maintenance_errors.labels(job.name).inc()
            log.exception("unexpected error in periodic database work (%s)", job.name)
        metrics.maintenance_duration.labels(job.name).observe(time.perf_counter() - started)
        metrics.maintenance_last_run.labels(job.name).set(time.time())
        return more
