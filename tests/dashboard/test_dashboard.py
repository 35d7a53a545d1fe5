"""The dashboard end to end: the built app, served by a collector on port 0, fed by the OpenTelemetry SDK, in a
real headless Chromium."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.dashboard.conftest import Site
from tests.dashboard.traffic import ANSWER, QUESTION, send_agent_trace, send_wide_trace
from tests.helpers import REPO, wait_until

SCREENSHOTS = REPO / "docs" / "screenshots"
WIDE_TRACE_BOUND_MS = 10_000  # generous: the figure is reported, the target is under a second


def api(site: Site, path: str, **params: Any) -> Any:
    response = httpx.get(site.collector.query_url + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def rows(page: Any) -> list[str]:
    return page.locator("[data-testid=span-row]").evaluate_all("rows => rows.map(row => row.dataset.spanId)")


def row(page: Any, span_id: str) -> Any:
    return page.locator(f"[data-testid=span-row][data-span-id='{span_id}']")


def test_list_filter_by_model_open_trace_collapse_and_read_an_llm_span(site: Site, page: Any) -> None:
    from playwright.sync_api import expect  # imported as the browser fixture imports Playwright: when it runs

    page.goto(site.url)
    page.wait_for_url(re.compile(r"/traces$"))
    page.locator("[data-testid=trace-row]").first.wait_for()

    page.select_option("select[name=model]", "gpt-4o")
    page.wait_for_url(re.compile(r"model=gpt-4o"))
    expected = {
        trace["trace_id"]
        for trace in api(site, "/api/v1/traces", model="gpt-4o", limit=500, start=time.time_ns() - 86_400 * 10**9)[
            "data"
        ]
    }
    wait_until(
        lambda: set(_trace_ids(page)) <= expected and site.agent.trace_id in _trace_ids(page),
        timeout=10,
        what="the list to show only gpt-4o traces",
    )
    assert "claude-3-5-haiku" not in page.locator("[data-testid=trace-table]").inner_text()

    page.select_option("select[name=breached]", "latency_ms")  # the options are the configured rules' metrics
    page.wait_for_url(re.compile(r"breached=latency_ms"))
    breached = {
        trace["trace_id"]
        for trace in api(
            site,
            "/api/v1/traces",
            model="gpt-4o",
            breached="latency_ms",
            limit=500,
            start=time.time_ns() - 86_400 * 10**9,
        )["data"]
    }
    assert site.agent.trace_id in breached and breached < expected
    wait_until(lambda: set(_trace_ids(page)) == breached, timeout=10, what="the list to show the breached traces")
    page.select_option("select[name=breached]", "")

    page.locator(f"[data-testid=trace-row][data-trace-id='{site.agent.trace_id}']").click()
    page.wait_for_url(re.compile(f"/traces/{site.agent.trace_id}$"))
    # Each count waits (Playwright's expect) for the rows the last step renders, not the ones before it.
    span_rows = page.locator("[data-testid=span-row]")
    expect(span_rows).to_have_count(8)
    expect(page.get_by_test_id("trace-spans")).to_have_text(re.compile(r"8$"))

    tool = site.agent.spans["tool"]
    row(page, tool).get_by_test_id("span-toggle").click()
    expect(row(page, tool).get_by_test_id("hidden-count")).to_have_text("+4")
    expect(span_rows).to_have_count(4)
    assert site.agent.spans["retry"] not in rows(page)
    row(page, tool).get_by_test_id("span-toggle").click()
    expect(span_rows).to_have_count(8)
    assert site.agent.spans["retry"] in rows(page)
    page.get_by_test_id("collapse-all").click()
    expect(span_rows).to_have_count(1)
    assert rows(page) == [site.agent.spans["root"]]
    page.get_by_test_id("expand-all").click()
    expect(span_rows).to_have_count(8)

    page.get_by_test_id("span-search").fill("select")
    expect(page.get_by_test_id("match-count")).to_have_text("1 found")
    expect(span_rows).to_have_count(8)  # found spans are highlighted ...
    page.get_by_test_id("only-matches").check()
    spans = site.agent.spans
    expect(span_rows).to_have_count(4)
    assert rows(page)[:3] == [spans["root"], spans["tool"], spans["retry"]]  # ... or alone
    page.get_by_test_id("span-search").fill("")
    expect(span_rows).to_have_count(8)

    plan = site.agent.spans["plan"]
    row(page, plan).click()
    page.wait_for_url(re.compile(f"span={plan}"))
    detail = page.get_by_test_id("span-detail")
    chat = detail.get_by_test_id("chat")
    chat.wait_for()
    messages = chat.get_by_test_id("chat-message")
    expect(messages).to_have_count(3)
    assert QUESTION in messages.nth(1).inner_text()
    assert "lookup_order" in messages.nth(2).inner_text() and "4411" in messages.nth(2).inner_text()
    genai = api(site, f"/api/v1/traces/{site.agent.trace_id}/spans/{plan}")["genai"]
    assert (genai["input_tokens"], genai["output_tokens"], genai["cache_read_tokens"]) == (1850, 96, 1024)
    assert detail.get_by_test_id("genai-input-tokens").inner_text().endswith("1.9k")
    assert detail.get_by_test_id("genai-output-tokens").inner_text().endswith("96")
    assert detail.get_by_test_id("genai-ttft").inner_text().endswith("420ms")
    assert genai["cost_usd"] > 0
    cost = "$" + format(float(format(genai["cost_usd"], ".2g")), "g")  # the dashboard's two significant digits
    assert detail.get_by_test_id("genai-cost").inner_text().endswith(cost)
    assert "faithfulness" in detail.get_by_test_id("evaluations").inner_text()

    # a deep link to the span opens the same view; keys move, open and close
    page.reload()
    chat.wait_for()
    assert row(page, plan).get_attribute("class").count("selected") == 1
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    next_span = rows(page)[rows(page).index(plan) + 1]
    page.wait_for_url(re.compile(f"span={next_span}"))
    page.keyboard.press("Escape")
    wait_until(lambda: "span" not in parse_qs(urlparse(page.url).query), timeout=5, what="Esc to close the span")
    assert page.get_by_test_id("span-detail").count() == 0

    answer = site.agent.spans["answer"]
    page.goto(f"{site.url}traces/{site.agent.trace_id}?span={answer}")
    assert ANSWER in page.get_by_test_id("chat").inner_text()


def test_the_list_announces_new_traces_and_keeps_its_place_until_refreshed(site: Site, page: Any) -> None:
    page.goto(f"{site.url}traces")
    page.locator("[data-testid=trace-row]").first.wait_for()
    refresh = page.get_by_test_id("refresh")
    assert refresh.inner_text() == "Refresh"
    before = _trace_ids(page)
    new = send_agent_trace(site.traffic, start=time.time_ns())
    site.traffic.flush()
    wait_until(lambda: "new trace" in refresh.inner_text(), timeout=15, what="the list to announce the new trace")
    assert _trace_ids(page) == before
    refresh.click()
    wait_until(lambda: _trace_ids(page)[:1] == [new.trace_id], timeout=10, what="the new trace on top")
    assert refresh.inner_text() == "Refresh"


def _trace_ids(page: Any) -> list[str]:
    return page.locator("[data-testid=trace-row]").evaluate_all("rows => rows.map(row => row.dataset.traceId)")


def test_cost_page_moves_when_spans_arrive(site: Site, page: Any, capsys: pytest.CaptureFixture[str]) -> None:
    page.goto(f"{site.url}cost")
    page.locator("[data-testid=live-status][data-status=open]").wait_for()
    today = page.get_by_test_id("spend-today")
    wait_until(lambda: today.inner_text().startswith("$"), timeout=5, what="the first cost tick")
    before = today.inner_text()

    tracer = site.traffic.tracer("support-bot")
    span = tracer.start_span("chat gpt-4o")
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 400_000,
            "gen_ai.usage.output_tokens": 1_000,
        }
    )  # $1.01
    span.end()
    sent = time.monotonic()
    site.traffic.flush()
    wait_until(lambda: today.inner_text() != before, timeout=10, what="the spend today to move")
    moved_after = time.monotonic() - sent
    assert _dollars(today.inner_text()) == pytest.approx(_dollars(before) + 1.01, abs=0.02)
    assert "gpt-4o" in page.get_by_test_id("spend-by-model").inner_text()
    with capsys.disabled():
        print(
            f"\nCost page: spend today moved {before} -> {today.inner_text()} "
            f"{moved_after:.2f} s after the span was sent"
        )


def _dollars(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


def test_a_10000_span_trace_opens_quickly(site: Site, page: Any, capsys: pytest.CaptureFixture[str]) -> None:
    trace_id, count = send_wide_trace(site.traffic, start=time.time_ns() - 30 * 10**9)
    site.traffic.flush()
    assert count == 10_000
    wait_until(
        lambda: site.collector.query("SELECT count(*) FROM spans WHERE trace_id = ?", trace_id) == [(count,)],
        timeout=60,
        what="the 10,000 spans to be stored",
    )
    page.goto(f"{site.url}traces?range=1h")
    link = page.locator(f"[data-testid=trace-row][data-trace-id='{trace_id}'] a")
    link.wait_for()
    page.evaluate("window.__opened = performance.now()")
    link.click()
    page.wait_for_function(
        "document.querySelector('[data-testid=row-count]')?.textContent.startsWith('10,000 of 10,000')",
        polling="raf",
        timeout=WIDE_TRACE_BOUND_MS + 5_000,
    )
    elapsed = page.evaluate("performance.now() - window.__opened")
    request, parsed, drawn = page.evaluate(
        """trace => {
            const since = (name) => performance.getEntriesByName(name).at(-1).startTime - window.__opened;
            const request = performance.getEntriesByType('resource').find(e => e.name.includes(trace));
            return [request.responseEnd - window.__opened, since('trace-skeleton-parsed'), since('waterfall-rendered')];
        }""",
        f"/api/v1/traces/{trace_id}",
    )
    rendered = page.locator("[data-testid=span-row]").count()
    with capsys.disabled():
        print(
            f"\n10,000-span trace: waterfall shown {elapsed:.0f} ms after the click (response received at "
            f"{request:.0f} ms, parsed at {parsed:.0f} ms, rendered at {drawn:.0f} ms); {rendered} rows in the DOM"
        )
    assert rendered < 200, "rows are virtualized"
    assert elapsed < WIDE_TRACE_BOUND_MS

    page.get_by_test_id("waterfall-rows").evaluate("element => element.scrollTop = element.scrollHeight")
    wait_until(
        lambda: "#99" in page.locator("[data-testid=span-row]").last.inner_text(),
        timeout=5,
        what="the last rows after scrolling to the bottom",
    )
    page.get_by_test_id("collapse-all").click()
    assert rows(page) == [rows(page)[0]]


PAGES = [
    ("traces", "traces?range=1h", "[data-testid=trace-row]"),
    ("trace", "traces/{agent}?span={plan}", "[data-testid=chat]"),
    ("cost", "cost", "[data-testid=live-status][data-status=open]"),
    ("latency", "latency?group_by=service&range=1h", "[data-testid=latency-panel] canvas"),
    ("quality", "quality?range=1h", "[data-testid=quality-panel] canvas"),
    ("breaches", "breaches", "[data-testid=breach]"),
]


@pytest.mark.parametrize(("name", "path", "ready"), PAGES, ids=[name for name, _, _ in PAGES])
def test_every_page_renders_from_the_collector_alone(
    site: Site, browser: Any, name: str, path: str, ready: str, tmp_path: Path
) -> None:
    """No error, no request outside the collector (fonts and assets are bundled); a screenshot of each page
    (into docs/screenshots with GENAI_COLLECTOR_SCREENSHOTS=1, the README shows them)."""
    page = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    try:
        page.goto(site.url + path.format(agent=site.agent.trace_id, plan=site.agent.spans["plan"]))
        page.locator(ready).first.wait_for(timeout=15_000)
        page.wait_for_timeout(1_500 if name == "cost" else 300)  # a few live ticks on the chart
        folder = SCREENSHOTS if os.environ.get("GENAI_COLLECTOR_SCREENSHOTS") == "1" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"))
        if name == "trace":
            page.get_by_test_id("theme-toggle").click()
            page.wait_for_timeout(200)
            assert page.evaluate("document.documentElement.dataset.theme") == "dark"
            page.screenshot(path=str(folder / "trace-dark.png"))
            page.get_by_test_id("theme-toggle").click()
    finally:
        page.close()
    assert not errors
    origin = site.collector.query_url
    assert [url for url in requests if not url.startswith((origin, "data:"))] == []


class PrefixProxy:
    """A reverse proxy that serves the collector under ``/genai/`` and strips the prefix, as nginx's
    ``location /genai/ { proxy_pass http://collector:16686/; }`` does (plain HTTP only)."""

    PREFIX = "/genai"

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading

        prefix = self.PREFIX

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not self.path.startswith(prefix + "/"):
                    self.send_error(404)
                    return
                response = httpx.get(upstream + self.path[len(prefix) :], timeout=10)
                self.send_response(response.status_code)
                for name in ("content-type", "cache-control"):
                    if name in response.headers:
                        self.send_header(name, response.headers[name])
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_dashboard_works_under_a_path_prefix(site: Site, page: Any) -> None:
    proxy = PrefixProxy(site.collector.query_url)
    try:
        page.goto(proxy.url)
        page.wait_for_url(proxy.url + "traces")
        page.locator(f"[data-testid=trace-row][data-trace-id='{site.agent.trace_id}']").click()
        page.wait_for_url(f"{proxy.url}traces/{site.agent.trace_id}")
        page.locator("[data-testid=span-row]").first.wait_for()
        plan = site.agent.spans["plan"]
        page.goto(f"{proxy.url}traces/{site.agent.trace_id}?span={plan}")  # a deep link, loaded afresh
        assert QUESTION in page.get_by_test_id("chat").inner_text()
    finally:
        proxy.close()
