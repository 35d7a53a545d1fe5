"""The dashboard's login in a real Chromium: a collector whose query server needs a read key, fed by the SDK
with an ingest key. The login form, a wrong key, the right one, a reload (the session cookie) and sign out."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth.test_otlp_auth import API_KEYS, INGEST_KEY, READ_KEY, WRONG_KEY
from tests.conftest import RunningCollector, collector_settings
from tests.dashboard.conftest import SNAPSHOTS, Site
from tests.dashboard.traffic import Traffic, send_agent_trace


@pytest.fixture(scope="module")
def guarded_site(dashboard_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = RunningCollector(
        collector_settings(tmp_path_factory.mktemp("login"), snapshots=SNAPSHOTS, auth={"api_keys": API_KEYS})
    ).start()
    traffic = Traffic(running.grpc_target, headers={"authorization": f"Bearer {INGEST_KEY}"})
    try:
        agent = send_agent_trace(traffic, start=time.time_ns() - 10 * 1_000_000_000)
        traffic.flush()
        site = Site(running, traffic, agent, f"{running.query_url}/")
        site.wait_settled(1)
        yield site
    finally:
        traffic.shutdown()
        running.stop()


def sign_in(page: Any, key: str) -> None:
    form = page.get_by_test_id("login-form")
    form.locator("input[name=key]").fill(key)
    form.get_by_role("button", name="Sign in").click()


def test_login_wrong_key_right_key_reload_and_sign_out(guarded_site: Site, page: Any, browser: Any) -> None:
    site = guarded_site
    assert httpx.get(site.collector.query_url + "/api/v1/traces").status_code == 401
    trace_row = page.locator(f"[data-testid=trace-row][data-trace-id='{site.agent.trace_id}']")

    page.goto(site.url)
    page.wait_for_url(re.compile(r"/traces$"))
    form = page.get_by_test_id("login-form")
    form.wait_for()
    assert form.locator("input[name=key]").get_attribute("type") == "password"
    assert page.get_by_test_id("trace-table").count() == 0

    sign_in(page, WRONG_KEY)
    assert page.get_by_test_id("login-error").inner_text() == "That key is not valid."
    assert browser.cookies(site.url) == []

    sign_in(page, READ_KEY)
    trace_row.wait_for()
    assert form.count() == 0
    assert page.url.endswith("/traces")  # the page asked for is the page shown
    (cookie,) = browser.cookies(site.url)
    assert cookie["name"] == "genai_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert READ_KEY not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read it

    page.reload()
    trace_row.wait_for()  # the cookie keeps the session
    assert form.count() == 0

    page.get_by_test_id("sign-out").click()
    form.wait_for()
    assert page.get_by_test_id("trace-table").count() == 0
    assert browser.cookies(site.url) == []
    page.reload()
    form.wait_for()  # the session ended on the server too
    assert page.get_by_test_id("sign-out").count() == 0
