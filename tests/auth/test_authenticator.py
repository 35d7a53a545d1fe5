"""The one decision every listener asks for, with a clock the test turns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from collector.auth.authenticator import WINDOW, Authenticator, FailureLimiter, bearer_token
from collector.auth.keys import KeyRing
from collector.auth.sessions import Sessions
from collector.config import load_settings

KEY = "ingest-key-0123456789abcdef"


def authenticator(limit: int = 3) -> Authenticator:
    keys = load_settings({"auth": {"api_keys": [{"name": "app", "key": KEY, "scopes": ["ingest"]}]}}).auth.api_keys
    return Authenticator(KeyRing(keys), CollectorRegistry(), max_failures_per_minute=limit)


def test_bearer_header_forms() -> None:
    assert bearer_token(None) == (None, True)
    assert bearer_token(f"Bearer {KEY}") == (KEY, True)
    assert bearer_token(f"bearer   {KEY} ") == (KEY, True)
    assert bearer_token(f"Basic {KEY}") == (None, False)
    assert bearer_token("Bearer") == (None, False)


def test_answers_by_case() -> None:
    auth = authenticator()
    assert auth.check("otlp_http", "ingest", f"Bearer {KEY}", "10.0.0.1") is None
    assert auth.check("otlp_http", "ingest", None, "10.0.0.1").reason == "missing_key"
    assert auth.check("otlp_http", "read", f"Bearer {KEY}", "10.0.0.1")[:2] == (403, "missing_scope")
    assert auth.check("otlp_http", "ingest", "Bearer nope-nope-nope-nope", "10.0.0.1")[:2] == (401, "unknown_key")


def test_limiter_counts_per_address_and_forgets_after_the_window() -> None:
    now = [1000.0]
    limiter = FailureLimiter(2, clock=lambda: now[0])
    limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == 60
    assert limiter.blocked_for("10.0.0.2") == 0
    now[0] += WINDOW - 0.5
    assert limiter.blocked_for("10.0.0.1") == 1
    now[0] += 1
    assert limiter.blocked_for("10.0.0.1") == 0
    limiter.failed("10.0.0.1")  # a new window starts from zero
    assert limiter.blocked_for("10.0.0.1") == 0
    assert FailureLimiter(0).blocked_for("10.0.0.1") == 0


def test_sessions_expire_and_end() -> None:
    now = [0.0]
    sessions = Sessions(ttl=60, clock=lambda: now[0])
    key = authenticator().keys.find(KEY)
    assert key is not None
    first, second = sessions.open(key), sessions.open(key)
    assert first != second and len(first) >= 43
    assert sessions.key_of(first) == key
    sessions.close(first)
    assert sessions.key_of(first) is None
    now[0] = 60
    assert sessions.key_of(second) is None


def test_grpc_peer_addresses() -> None:
    from collector.auth.grpc import peer_address

    assert peer_address("ipv4:10.0.0.7:5000") == "10.0.0.7"
    assert peer_address("ipv6:%5B::1%5D:5000") == "::1"
    assert peer_address("unix:/run/app.sock") == "unix:/run/app.sock"
