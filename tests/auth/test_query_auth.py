"""The read scope on the query server: REST, Jaeger API and the WebSocket live feed, the dashboard's
login (a session cookie), and the refusal to serve reads to the network without a key."""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from collector.service import StartupError
from tests.auth.certs import TestCA
from tests.auth.test_otlp_auth import API_KEYS, INGEST_KEY, READ_KEY, WRONG_KEY
from tests.helpers import metric_value, scrape

LIVE = "/api/v1/live"


@pytest.fixture
def guarded(start_collector: Any) -> Any:
    return start_collector(auth={"api_keys": API_KEYS})


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def live_url(running: Any) -> str:
    return running.query_url.replace("http://", "ws://") + LIVE


@pytest.mark.parametrize("path", ["/api/v1/traces", "/api/services", "/api/v3/services", "/api/v1/openapi.json"])
def test_reads_need_a_read_key(guarded: Any, path: str) -> None:
    url = guarded.query_url + path
    refused = httpx.get(url)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="genai-collector"'
    assert refused.json() == {"error": {"code": "missing_key", "message": refused.json()["error"]["message"]}}
    assert httpx.get(url, headers=bearer(WRONG_KEY)).status_code == 401
    assert httpx.get(url, headers=bearer(INGEST_KEY)).status_code == 403
    assert httpx.get(url, headers=bearer(READ_KEY)).status_code == 200
    exposition = scrape(guarded)
    assert metric_value(exposition, "genai_collector_auth_requests_total", listener="query", key="dashboard") == 1


def test_websocket_is_refused_before_accept_without_a_key(guarded: Any) -> None:
    for attempt in ({}, {"additional_headers": bearer(INGEST_KEY)}):
        with pytest.raises(InvalidStatus) as refused:
            connect(live_url(guarded), open_timeout=5, **attempt)
        assert refused.value.response.status_code in (401, 403)
    with pytest.raises(InvalidStatus) as in_query_string:  # never read from the URL, which ends up in logs
        connect(f"{live_url(guarded)}?token={READ_KEY}&key={READ_KEY}&access_token={READ_KEY}", open_timeout=5)
    assert in_query_string.value.response.status_code == 401
    assert json.loads(in_query_string.value.response.body)["error"]["code"] == "missing_key"


def test_websocket_with_a_bearer_header_or_subprotocol(guarded: Any) -> None:
    with connect(live_url(guarded), additional_headers=bearer(READ_KEY), open_timeout=5) as websocket:
        assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"
    offered = ["genai-collector.v1", f"genai-collector.bearer.{READ_KEY}"]
    with connect(live_url(guarded), subprotocols=offered, open_timeout=5) as websocket:  # type: ignore[arg-type]
        assert websocket.subprotocol == "genai-collector.v1"  # the key is never echoed
        assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"
    with pytest.raises(InvalidStatus):
        connect(live_url(guarded), subprotocols=["genai-collector.v1", f"genai-collector.bearer.{WRONG_KEY}"])  # type: ignore[list-item]


def test_dashboard_login_sets_a_strict_http_only_session_cookie(guarded: Any) -> None:
    with httpx.Client(base_url=guarded.query_url) as browser:
        assert browser.post("/api/v1/login", json={"key": WRONG_KEY}).status_code == 401
        assert browser.post("/api/v1/login", json={"key": INGEST_KEY}).status_code == 403
        form = browser.post(
            "/api/v1/login", content=f"key={READ_KEY}", headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert form.status_code == 415  # a page on another site can post a form, not JSON
        assert browser.get("/api/v1/traces").status_code == 401

        login = browser.post("/api/v1/login", json={"key": READ_KEY})
        assert login.status_code == 200
        assert login.json()["name"] == "dashboard"
        cookie = login.headers["set-cookie"]
        session_id = browser.cookies["genai_session"]
        assert READ_KEY not in cookie and len(session_id) >= 43
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in attributes  # plain HTTP here; see the TLS test
        assert browser.get("/api/v1/traces").status_code == 200

        cookie_header = {"cookie": f"genai_session={session_id}"}
        with connect(live_url(guarded), additional_headers=cookie_header, open_timeout=5) as websocket:
            assert json.loads(websocket.recv(timeout=5))["type"] == "subscribed"

        assert browser.post("/api/v1/logout").status_code == 204
        assert browser.get("/api/v1/traces").status_code == 401
    ended = httpx.get(guarded.query_url + "/api/v1/traces", headers=cookie_header)
    assert ended.status_code == 401
    assert ended.json()["error"]["code"] == "expired_session"
    other = httpx.get(guarded.query_url + "/api/v1/traces", headers={"cookie": "genai_session=made-up"})
    assert other.json()["error"]["code"] == "expired_session"


def test_login_over_tls_sets_a_secure_cookie(start_collector: Any, tmp_path: Any) -> None:
    ca = TestCA(tmp_path / "pki")
    server = ca.issue("server")
    running = start_collector(
        auth={"api_keys": API_KEYS}, tls={"cert_file": str(server.cert_file), "key_file": str(server.key_file)}
    )
    url = running.query_url.replace("http://", "https://")
    login = httpx.post(
        url + "/api/v1/login", json={"key": READ_KEY}, verify=ssl.create_default_context(cafile=ca.cert_file)
    )
    assert login.status_code == 200
    assert "secure" in {part.strip().lower() for part in login.headers["set-cookie"].split(";")}


def test_the_query_server_will_not_serve_reads_to_the_network_without_a_key(
    start_collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(StartupError, match=r"query server will not listen on 0\.0\.0\.0:0 without an API key"):
        start_collector(query={"endpoint": "0.0.0.0:0"})
    caplog.set_level(logging.WARNING)
    start_collector(query={"endpoint": "0.0.0.0:0"}, auth={"allow_unauthenticated_reads": True})
    assert "serves reads without a key" in caplog.text
    running = start_collector(query={"endpoint": "0.0.0.0:0"}, auth={"api_keys": API_KEYS})
    assert httpx.get(running.query_url + "/api/v1/traces").status_code == 401


def test_without_read_keys_the_loopback_query_server_stays_open(start_collector: Any) -> None:
    running = start_collector(auth={"api_keys": [API_KEYS[0]]})  # an ingest key only
    assert httpx.get(running.query_url + "/api/v1/traces").status_code == 200
