"""What observes committed work (the GenAI metrics, the live feed), run on a thread of its own.

The writer thread is the one serial stage of ingest: everything it does per batch delays every client's
acknowledgement. So it only hands each committed batch's observation over (``submit``: an append to a deque)
and a second thread runs the observations, one at a time, in the order they were handed over.

Bounded: the observations waiting hold at most ``capacity`` items (spans, evaluations, settled traces). An
observer that falls further behind never makes the writer wait nor memory grow: the observation that does not
fit is dropped and its items counted (``genai_collector_dropped_observations_total``). ``caught_up`` waits until
everything handed over before the call has been observed: a scrape of ``/metrics`` calls it first, so that it
shows every batch acknowledged before it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

from prometheus_client import Counter

from collector.component import Deadline

log = logging.getLogger(__name__)

Observation = Callable[[], None]


class Observers:
    """The observer thread and its bounded queue; a component, started before the writer and stopped after it."""

    name = "observers"

    def __init__(self, dropped: Counter, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._dropped = dropped
        self._condition = threading.Condition()
        self._waiting: deque[tuple[Observation, int]] = deque()
        self.held = 0  # items in the observations waiting
        self._submitted = 0  # observations taken into the queue, ever
        self._observed = 0  # of them, observations run (or failed)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="commit-observer", daemon=True)

    async def start(self) -> None:
        self._thread.start()

    async def stop(self, deadline: Deadline) -> None:
        if self._thread.is_alive():
            await asyncio.to_thread(self.close, deadline.remaining())

    def submit(self, observation: Observation, items: int) -> None:
        """Queue ``observation`` (of ``items`` spans, evaluations or traces) to run after those before it; never
        waits. Dropped and counted when the queue is full; an observation larger than the whole queue is taken
        when the queue is empty, so that none is refused forever."""
        with self._condition:
            if self._closing or (self.held and self.held + items > self.capacity):
                self._dropped.inc(items)
                return
            self._waiting.append((observation, items))
            self.held += items
            self._submitted += 1
            self._condition.notify()

    def caught_up(self, timeout: float) -> bool:
        """Wait until every observation submitted before the call has run; False if ``timeout`` passed first."""
        with self._condition:
            target = self._submitted
            return self._condition.wait_for(lambda: self._observed >= target, timeout)

    def close(self, timeout: float) -> None:
        """Run what is queued (within ``timeout``), then stop the thread; later submissions are dropped."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._waiting:
                    if self._closing:
                        return
                    self._condition.wait()
                observation, items = self._waiting.popleft()
            try:
                observation()
            except Exception:
                log.exception("error while observing committed work")
            with self._condition:
                self.held -= items
                self._observed += 1
                self._condition.notify_all()
