"""The lifecycle every running part of the collector shares, after the OpenTelemetry Collector's
``component.Component``: ``start`` once, then ``stop`` once. ``stop`` is safe without ``start`` (or after a
``start`` that failed half-way) and a second ``stop`` does nothing. ``collector.service.Service`` starts the
components in dependency order and stops them in reverse, all within one shutdown deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class StartupError(Exception):
    """The collector cannot start; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """When the whole shutdown must be done (event-loop time), shared by every component's ``stop``."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(asyncio.get_running_loop().time() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - asyncio.get_running_loop().time())


class Component(Protocol):
    @property
    def name(self) -> str: ...

    async def start(self) -> None:
        """Acquire what the component needs (ports, threads, connections); raise ``StartupError`` with a
        message for the user when it cannot."""

    async def stop(self, deadline: Deadline) -> None:
        """Release it, finishing work in progress until ``deadline``; safe without ``start``, idempotent."""


class Together:
    """Components started one after the other and stopped at the same time, sharing the deadline: the
    listeners, so that all of them stop accepting at once and their requests in flight finish together."""

    def __init__(self, name: str, components: Sequence[Component]) -> None:
        self.name = name
        self.components = tuple(components)
        self._started: list[Component] = []

    async def start(self) -> None:
        for component in self.components:
            self._started.append(component)  # a half-started one is stopped too; stop is safe either way
            await component.start()

    async def stop(self, deadline: Deadline) -> None:
        started, self._started = self._started, []
        outcomes = await asyncio.gather(
            *(component.stop(deadline) for component in reversed(started)), return_exceptions=True
        )
        for outcome in outcomes:  # every member got its chance to stop; then the first failure surfaces
            if isinstance(outcome, BaseException):
                raise outcome
