"""A collector with its query server on port 0, fed agent traffic by the real SDK, and a real headless Chromium
(Debian's /usr/bin/chromium, driven by Playwright, which never downloads a browser) on the built dashboard.

Outside CI the tests skip, saying why, when npm, Chromium or Playwright is missing; in CI (``CI`` set) they fail.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningCollector, collector_settings
from tests.dashboard.traffic import AgentTrace, Traffic, send_agent_trace, send_history
from tests.helpers import missing, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SNAPSHOTS = {
    "settle_after": "200ms",
    "interval": "50ms",
    "rules": [
        {"metric": "latency_ms", "above": 3000, "service": "support-bot"},
        {"metric": "latency_ms", "above": 2000},
        {"metric": "ttft_ms", "above": 500},
        {"metric": "cost_usd", "above": 0.01},
        {"metric": "eval:faithfulness", "below": 0.85},
    ],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API holds an event loop on the main thread while it runs, which would
    break later tests that call ``asyncio.run``."""
    if not Path(CHROMIUM).exists():
        missing("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (Python) is not installed: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1440, "height": 900},
            color_scheme="light",
        )
        yield context
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page()
    page.set_default_timeout(15_000)
    yield page
    page.close()


@dataclass
class Site:
    """The running collector, its dashboard's URL, and what was sent to it."""

    collector: RunningCollector
    traffic: Traffic
    agent: AgentTrace
    url: str

    def wait_settled(self, count: int) -> None:
        wait_until(
            lambda: (
                self.collector.query("SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NOT NULL")[0][0]
                >= count
            ),
            timeout=30,
            what=f"{count} traces to settle",
        )


@pytest.fixture(scope="module")
def site(dashboard_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = RunningCollector(collector_settings(tmp_path_factory.mktemp("dashboard"), snapshots=SNAPSHOTS)).start()
    traffic = Traffic(running.grpc_target)
    try:
        now = time.time_ns()
        send_history(traffic, end=now - 60 * 1_000_000_000)
        agent = send_agent_trace(traffic, start=now - 10 * 1_000_000_000)
        traffic.flush()
        site = Site(running, traffic, agent, f"{running.query_url}/")
        site.wait_settled(121)
        yield site
    finally:
        traffic.shutdown()
        running.stop()
