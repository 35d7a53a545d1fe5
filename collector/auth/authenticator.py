"""One decision for every listener and transport: may this request, with these credentials, have this scope?

The HTTP middleware and the gRPC interceptor both ask ``Authenticator.check`` and only translate its
answer. Failures are counted by listener and reason (never a key), logged at most every 10 s, and an
address that keeps presenting wrong keys is refused for the rest of the minute (429 / RESOURCE_EXHAUSTED)
before its keys are even compared, which bounds guessing. A request without any key is not a guess and
does not count toward that limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import NamedTuple

from prometheus_client import CollectorRegistry

from collector.auth.failures import FailureTable
from collector.auth.keys import KeyRing, StoredKey
from collector.config import Scope
from collector.observability.logs import rate_limited
from collector.observability.metrics import AuthMetrics

log = logging.getLogger(__name__)

WINDOW = 60.0  # seconds over which wrong keys from one address are counted

# reason -> (HTTP status, what the client is told)
REASONS = {
    "missing_key": (401, "this endpoint needs an API key: send the header Authorization: Bearer <key>"),
    "malformed": (401, "the Authorization header must be 'Bearer <key>'"),
    "unknown_key": (401, "the API key is not valid"),
    "expired_session": (401, "the session has expired or was ended; log in again"),
    "missing_scope": (403, "the API key does not have the {scope} scope"),
    "rate_limited": (429, "too many requests with a wrong API key from this address; retry in {retry_after}s"),
}


class Refusal(NamedTuple):
    status: int  # 401, 403 or 429
    reason: str  # a key of REASONS: the metrics label
    message: str
    retry_after: int | None = None


class FailureLimiter:
    """Wrong keys per address in fixed one-minute windows, counted in ``table`` (``auth.failures``): one table
    for the whole collector, so that an address is refused after exactly ``limit`` wrong keys whichever ingest
    worker its connections reach. Thread-safe (gRPC and uvicorn share it)."""

    def __init__(
        self, limit: int, clock: Callable[[], float] = time.monotonic, table: FailureTable | None = None
    ) -> None:
        """``table``: the collector's shared table (an ingest worker gets its parent's); by default a new one."""
        self._limit = limit
        self._clock = clock
        self.table = table if table is not None else FailureTable.create()

    def blocked_for(self, address: str) -> int:
        """Seconds until ``address`` may try again (0: it may now)."""
        if not self._limit:
            return 0
        window = self.table.window(address)
        if window is None:
            return 0
        started, failures = window
        remaining = started + WINDOW - self._clock()
        return math.ceil(remaining) if failures >= self._limit and remaining > 0 else 0

    def failed(self, address: str) -> None:
        if self._limit:
            self.table.failed(address, self._clock(), WINDOW)


def bearer_token(authorization: str | None) -> tuple[str | None, bool]:
    """The key of an ``Authorization: Bearer <key>`` header, and whether the header was well formed."""
    if authorization is None:
        return None, True
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, False
    return token, True


class Authenticator:
    def __init__(
        self,
        keys: KeyRing,
        registry: CollectorRegistry,
        *,
        max_failures_per_minute: int,
        failures: FailureTable | None = None,
    ) -> None:
        """``failures``: where wrong keys are counted (``FailureLimiter``)."""
        self.keys = keys
        self.metrics = AuthMetrics(registry)
        self.limiter = FailureLimiter(max_failures_per_minute, table=failures)

    def check(self, listener: str, scope: Scope, authorization: str | None, address: str | None) -> Refusal | None:
        """None when the request may go on; otherwise why not. ``authorization`` is the header's value."""
        address = address or "unknown"
        blocked_for = self.limiter.blocked_for(address)
        if blocked_for:
            return self.refuse(listener, "rate_limited", address, retry_after=blocked_for)
        token, well_formed = bearer_token(authorization)
        if not well_formed:
            self.limiter.failed(address)
            return self.refuse(listener, "malformed", address)
        if token is None:
            return self.refuse(listener, "missing_key", address)
        key = self.keys.find(token)
        if key is None:
            self.limiter.failed(address)
            return self.refuse(listener, "unknown_key", address)
        return self.grant(listener, scope, key, address)

    def grant(self, listener: str, scope: Scope, key: StoredKey, address: str) -> Refusal | None:
        """The scope check once a key (or the key behind a session) is known."""
        if scope not in key.scopes:
            return self.refuse(listener, "missing_scope", address, scope=scope, key=key.name)
        self.metrics.authenticated.labels(listener, key.name).inc()
        return None

    def refuse(
        self,
        listener: str,
        reason: str,
        address: str,
        *,
        scope: str = "",
        key: str = "",
        retry_after: int | None = None,
    ) -> Refusal:
        status, message = REASONS[reason]
        self.metrics.failures.labels(listener, reason).inc()
        rate_limited(
            log,
            logging.WARNING,
            "%s refused a request from %s: %s%s",
            listener,
            address,
            reason,
            f" (key {key})" if key else "",
        )
        return Refusal(status, reason, message.format(scope=scope, retry_after=retry_after), retry_after)
