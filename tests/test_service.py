"""The service starts its components in dependency order and stops them in reverse, within one deadline;
stopping a service that never started is harmless."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from collector.component import Deadline
from collector.service import Service
from tests.conftest import RunningCollector, collector_settings

START_ORDER = ["database", "wal-checkpoint", "admin", "observers", "maintenance", "pipeline", "ingest", "listeners"]


def test_components_start_in_dependency_order(collector: RunningCollector) -> None:
    service = collector.collector
    assert [component.name for component in service.components] == START_ORDER
    listeners = service.components[-1]
    assert [listener.name for listener in listeners.components] == ["otlp_grpc", "otlp_http", "query"]  # type: ignore[attr-defined]
    assert set(service.ports) == {"otlp_grpc", "otlp_http", "admin", "query"}


def test_components_stop_in_reverse_order_and_the_admin_endpoint_answers_until_the_drain_is_over(
    tmp_path: Path,
) -> None:
    running = RunningCollector(collector_settings(tmp_path)).start()
    stopped: list[str] = []
    readiness: dict[str, int] = {}
    for component in running.collector.components:
        original = component.stop

        async def stop(deadline: Deadline, original: Any = original, name: str = component.name) -> None:
            if name == "pipeline":  # the listeners are closed; /readyz still answers, unready
                readiness["during drain"] = (
                    await asyncio.to_thread(httpx.get, running.admin_url + "/readyz", timeout=5)
                ).status_code
            await original(deadline)
            stopped.append(name)

        component.stop = stop  # type: ignore[method-assign]
    assert running.stop()
    assert stopped == list(reversed(START_ORDER))
    assert readiness == {"during drain": 503}
    assert running.collector.components == ()


def test_stop_without_start_is_harmless(tmp_path: Path) -> None:
    service = Service(collector_settings(tmp_path))

    async def stop_twice() -> tuple[bool, bool]:
        return await service.stop(), await service.stop()

    assert asyncio.run(stop_twice()) == (True, True)
    assert not (tmp_path / "collector.db").exists()  # nothing was opened
    assert "starting" in service.unready_reasons()
