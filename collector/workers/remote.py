"""An ingest worker's side of the queue: ``Pipeline``'s surface for ``Ingest`` (``Intake``), over the link to the
main process, which queues the records, commits them and answers when they are committed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from collector.model import Records
from collector.pipeline import Backpressure, QueueFull, Reservation, WriteFailed
from collector.workers.link import Door, Link, submission


class RemotePipeline:
    """Room is reserved against the door (the main queue's fill, in shared memory) plus what this worker has
    reserved and not yet sent, without a round trip; ``submit`` sends the records and resolves once the main
    process answers: committed, or the refusal the client gets (``QueueFull``, ``WriteFailed``, ``InvalidData``...)."""

    def __init__(self, link: Link, door: Door, capacity: int, prepare: Callable[[Records], Records]) -> None:
        """``prepare``: the storage engine's ``SpanStore.prepare`` (``storage.engines.records_preparer``): the rows
        are encoded here, and reach the writer of the main process ready to insert."""
        self.prepare = prepare
        self._link = link
        self._door = door
        self.capacity = capacity
        self._reserved = 0  # reserved here and not yet sent; touched only on the event loop
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._gone: Backpressure | None = None

    def _refusal(self, count: int) -> Backpressure | None:
        if self._gone is not None:
            return self._gone
        held = self._door.held_spans + self._reserved
        if held + count > self.capacity and held:
            return QueueFull(f"queue full ({held} of {self.capacity} spans waiting for commit); retry later")
        return None

    def check_room(self) -> None:
        if refusal := self._refusal(1):
            raise refusal

    def reserve(self, count: int) -> Reservation:
        if refusal := self._refusal(count):
            raise refusal
        self._reserved += count
        return Reservation(self, count)

    def _release(self, count: int) -> None:
        self._reserved -= count

    def submit(self, records: Records, reservation: Reservation | None = None) -> asyncio.Future[None]:
        if reservation is None:
            reservation = self.reserve(records.count)
        self._reserved -= reservation.take()  # the main process counts them from now on
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._gone is not None:
            future.set_exception(self._gone)
            return future
        request_id = next(self._ids)
        self._waiting[request_id] = future
        self._link.send(submission(request_id, records))
        return future

    def done(self, request_id: int, error: Exception | None) -> None:
        """The main process's answer to a submission."""
        future = self._waiting.pop(request_id, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def lost(self) -> None:
        """The main process is gone: what waits for it fails (its clients retry), and nothing more is taken."""
        self._gone = WriteFailed("the collector's writer process is gone; retry later")
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(self._gone)
