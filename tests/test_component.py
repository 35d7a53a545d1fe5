"""Components started together stop together: in reverse, all at once, safely when never started."""

from __future__ import annotations

import asyncio

import pytest

from collector.component import Deadline, Together


class Recorded:
    def __init__(self, name: str, events: list[str], *, fails_to_start: bool = False) -> None:
        self.name, self.events, self.fails_to_start = name, events, fails_to_start
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        self.events.append(f"start {self.name}")
        if self.fails_to_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self, deadline: Deadline) -> None:
        self.events.append(f"stop {self.name}")
        self.stopping.set()
        await asyncio.sleep(0.01)
        self.events.append(f"stopped {self.name}")


def test_members_start_in_order_and_stop_at_once_in_reverse() -> None:
    events: list[str] = []
    group = Together("listeners", [Recorded("grpc", events), Recorded("http", events)])

    async def cycle() -> None:
        await group.start()
        await group.stop(Deadline.after(1.0))
        await group.stop(Deadline.after(1.0))  # idempotent

    asyncio.run(cycle())
    assert events == ["start grpc", "start http", "stop http", "stop grpc", "stopped http", "stopped grpc"]


def test_stop_without_start_stops_nothing() -> None:
    events: list[str] = []
    asyncio.run(Together("listeners", [Recorded("grpc", events)]).stop(Deadline(0.0)))
    assert events == []


def test_a_member_that_fails_to_start_is_stopped_with_those_before_it() -> None:
    events: list[str] = []
    group = Together(
        "listeners", [Recorded("grpc", events), Recorded("http", events, fails_to_start=True), Recorded("q", events)]
    )

    async def cycle() -> None:
        with pytest.raises(RuntimeError, match="http cannot start"):
            await group.start()
        await group.stop(Deadline.after(1.0))

    asyncio.run(cycle())
    assert "start q" not in events
    assert {"stopped grpc", "stopped http"} <= set(events)
