"""Bounded queue, batching and acknowledgement after commit.

Request handlers on the event loop call ``submit``; one writer thread takes batches (flushed on
size or on the age of the oldest waiting span), commits them through the ``SpanStore`` it owns,
and only then resolves the requests' futures. When the queue cannot take a request it is refused
at once (the transports answer 503 / UNAVAILABLE with a retry hint): old data is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from collector.model import Records
from collector.observability.logs import rate_limited
from collector.observability.metrics import CollectorMetrics
from collector.pipeline.errors import Backpressure, InvalidData, QueueFull, ShuttingDown, WriteFailed
from collector.storage.errors import RowsRefused, StorageError
from collector.storage.store import NOTHING_WRITTEN, SpanStore, Written

log = logging.getLogger(__name__)

SATURATION = 0.9  # share of the capacity past which /readyz reports the queue as saturated


@dataclass(slots=True)
class _Request:
    records: Records
    count: int
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    enqueued_at: float = field(default_factory=time.monotonic)


class WriterWork(Protocol):
    """Work that needs the write connection (maintenance: settling, retention), which the writer thread runs
    between batches so that it never competes with a commit for the connection."""

    def due_at(self) -> float:
        """``time.monotonic()`` from which some of the work is due (``math.inf``: none is)."""
        ...

    def run_due(self) -> None:
        """Run what is due, and plan the next round; errors are the work's own to count and log."""
        ...


class Intake(Protocol):
    """What the receivers' ``Ingest`` needs of the queue: the ``Pipeline`` itself in the process that writes,
    a ``collector.workers.remote.RemotePipeline`` in an ingest worker process."""

    def prepare(self, records: Records) -> Records: ...

    def check_room(self) -> None: ...

    def reserve(self, count: int) -> Reservation: ...

    def submit(self, records: Records, reservation: Reservation | None = None) -> Awaitable[None]: ...

    def _release(self, count: int) -> None: ...


class Reservation:
    """Room in the queue held for one request until ``Pipeline.submit`` uses it or ``release`` gives it back."""

    __slots__ = ("_pipeline", "count")

    def __init__(self, pipeline: Intake, count: int) -> None:
        self._pipeline = pipeline
        self.count = count

    def take(self) -> int:
        """The reserved count, once; the reservation is then spent."""
        count, self.count = self.count, 0
        return count

    def release(self) -> None:
        """Give the room back unless ``submit`` used it; safe to call more than once."""
        if self.count:
            self._pipeline._release(self.take())


class Pipeline:
    def __init__(
        self,
        writer: SpanStore,
        metrics: CollectorMetrics,
        *,
        capacity: int,
        batch_size: int,
        batch_max_age: float,
        on_commit: Callable[[list[Records], Written], None] | None = None,
        between_batches: WriterWork | None = None,
    ) -> None:
        """``on_commit`` sees every committed batch and what the writer made of it: the spans it stored for
        the first time, and those of them whose model call another span counts (``SpanStore.write``). It runs on
        the writer thread before the batch's requests are acknowledged, so it should only hand the work over
        (``pipeline.Observers``): whatever it does delays every acknowledgement and the next batch;
        ``between_batches`` is run on the writer thread whenever it is due, between two batches (work that is
        behind becomes due at once, so that it alternates with the batches rather than holding them up)."""
        if batch_size > capacity:
            raise ValueError("batch_size cannot exceed capacity")
        self._writer = writer
        self._metrics = metrics
        self.capacity = capacity
        self._batch_size = batch_size
        self._batch_max_age = batch_max_age
        self._condition = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._waiting_spans = 0  # in the queue, not yet taken by the writer
        self.held_spans = 0  # in the queue or in the transaction being written
        self._closing = False
        self.healthy = True  # False after a failed commit, until one succeeds
        self._on_commit = on_commit
        self._between_batches = between_batches
        self._thread = threading.Thread(target=self._run, name="span-writer", daemon=True)
        metrics.queue_capacity.set(capacity)
        metrics.queue_size.set_function(lambda: self.held_spans)

    @property
    def saturated(self) -> bool:
        return self.held_spans >= self.capacity * SATURATION

    def start(self) -> None:
        self._thread.start()

    def _refusal(self, count: int) -> Backpressure | None:
        """Why ``count`` more records cannot be taken now, if they cannot. A request larger than the whole
        queue is taken when the queue is empty, so that it can never be refused forever."""
        if self._closing:
            return ShuttingDown("the collector is shutting down")
        if self.held_spans + count > self.capacity and self.held_spans:
            return QueueFull(f"queue full ({self.held_spans} of {self.capacity} spans waiting for commit); retry later")
        return None

    def prepare(self, records: Records) -> Records:
        """The store's work on ``records`` that needs no connection (``SpanStore.prepare``), for the ingest
        thread that decoded them to do before ``submit``."""
        return self._writer.prepare(records)

    def check_room(self) -> None:
        """Refuse at the door, before a request is even read, while the queue is full or closing."""
        if refusal := self._refusal(1):
            raise refusal

    def reserve(self, count: int) -> Reservation:
        """Room for ``count`` records, taken before the request is decoded so that a refusal costs little.

        Raises ``QueueFull`` or ``ShuttingDown`` at once instead of waiting. The caller hands the
        reservation to ``submit`` or, on any error, releases it.
        """
        with self._condition:
            if refusal := self._refusal(count):
                raise refusal
            self.held_spans += count
        return Reservation(self, count)

    def submit(self, records: Records, reservation: Reservation | None = None) -> asyncio.Future[None]:
        """Queue records for the next commit; the future resolves once they are committed.

        Without a ``reservation`` the room is reserved here (and may be refused); with one, the records
        take its place, whatever their final count (decoding may have rejected some, or found evaluations).
        """
        if reservation is None:
            reservation = self.reserve(records.count)
        loop = asyncio.get_running_loop()
        count = records.count
        request = _Request(records, count, loop.create_future(), loop)
        with self._condition:
            reserved = reservation.take()
            if self._closing:
                self.held_spans -= reserved
                raise ShuttingDown("the collector is shutting down")
            was_idle = not self._waiting
            self._waiting.append(request)
            self._waiting_spans += count
            self.held_spans += count - reserved
            if was_idle or self._waiting_spans >= self._batch_size:
                self._condition.notify()
        return request.future

    def _release(self, count: int) -> None:
        with self._condition:
            self.held_spans -= count

    def close(self, timeout: float) -> bool:
        """Refuse new requests, commit everything queued, stop the writer; False if spans are still
        uncommitted when ``timeout`` passes.

        Judged by what is held, not by the thread: with nothing left to write the writer never touches
        the database again, even if it has not yet woken up to exit (``timeout`` may be 0 when slow
        clients used up the shutdown deadline).
        """
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(timeout)
        with self._condition:
            return self.held_spans == 0

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._commit(batch)
            work = self._between_batches
            if work is not None and time.monotonic() >= work.due_at():
                work.run_due()

    def _next_batch(self) -> list[_Request] | None:
        """The next batch to commit; empty when work between batches is due; None once closed and drained."""
        with self._condition:
            while not self._waiting:
                if self._closing:
                    return None
                if self._between_batches is None:
                    self._condition.wait()
                    continue
                until_due = self._between_batches.due_at() - time.monotonic()
                if until_due <= 0:
                    return []
                self._condition.wait(min(until_due, threading.TIMEOUT_MAX))
            while not self._closing and self._waiting_spans < self._batch_size:
                linger = self._waiting[0].enqueued_at + self._batch_max_age - time.monotonic()
                if linger <= 0:
                    break
                self._condition.wait(linger)
            batch: list[_Request] = []
            taken = 0
            while self._waiting and (not batch or taken + self._waiting[0].count <= self._batch_size):
                request = self._waiting.popleft()
                batch.append(request)
                taken += request.count
            self._waiting_spans -= taken
            return batch

    def _commit(self, batch: list[_Request]) -> None:
        count = sum(request.count for request in batch)
        spans = sum(request.records.span_count for request in batch)
        started = time.perf_counter()
        error: Exception | None = None
        written = NOTHING_WRITTEN
        try:
            written = self._writer.write([request.records for request in batch])
        except RowsRefused as failure:
            if len(batch) > 1:
                self._isolate(batch)
                return
            error = self._invalid_data(failure)
        except StorageError as failure:
            error = self._write_failed(failure.kind, f"database write failed: {failure}")
        except Exception:  # a bug of ours: keep the daemon up, fail the batch loudly
            log.exception("unexpected error while writing a batch of %d records", count)
            error = self._write_failed("internal", "internal error while storing spans")
        else:
            self.healthy = True
            self._metrics.commit_duration.observe(time.perf_counter() - started)
            self._metrics.batch_send_size.observe(count)
            if len(written.stored) < spans:
                self._metrics.duplicate_spans.inc(spans - len(written.stored))
        with self._condition:
            self.held_spans -= count
        if error is None and self._on_commit is not None:
            try:
                self._on_commit([request.records for request in batch], written)
            except Exception:
                log.exception("error while observing a committed batch")
        _resolve(batch, error)

    def _isolate(self, batch: list[_Request]) -> None:
        """The database refused the batch for its data: commit each request alone, so that only the
        request that carries the bad data fails (non-retryable) and the others are stored."""
        for request in batch:
            self._commit([request])

    def _invalid_data(self, failure: RowsRefused) -> InvalidData:
        self._metrics.write_failures.labels(failure.kind).inc()
        rate_limited(log, logging.WARNING, "the database refused a request's data (%s); answered as invalid", failure)
        return InvalidData(f"the database refused this request's data: {failure}; it cannot be stored as sent")

    def _write_failed(self, kind: str, message: str) -> WriteFailed:
        self.healthy = False
        self._metrics.write_failures.labels(kind).inc()
        rate_limited(log, logging.ERROR, "%s; the affected requests were answered with a retryable error", message)
        return WriteFailed(message)


def _resolve(batch: list[_Request], error: Exception | None) -> None:
    """Hand each request's outcome to the event loop that waits for it."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for request in batch:
        by_loop.setdefault(request.loop, []).append(request.future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
