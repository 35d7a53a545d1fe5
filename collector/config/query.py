"""``query``: the query server (REST API, live feed, Jaeger-compatible API)."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
)

from collector.config.base import Duration, Section, parsed
from collector.config.server import Endpoint


class QuerySettings(Section):
    """The query server: REST API, live feed and Jaeger-compatible API (docs/query-api.md)."""

    endpoint: Endpoint = parsed(
        "127.0.0.1:16686",
        "Query API listen address; any other than loopback needs a key with the read scope "
        "(or auth.allow_unauthenticated_reads).",
    )
    read_connections: int = Field(4, ge=1, le=32, description="Read-only database connections (queries at once).")
    statement_timeout: Duration = parsed("5s", "A query running longer is stopped and refused as too broad (400).")
    live_queue_limit: int = Field(
        256,
        ge=1,
        description="Live-feed messages held per client (each up to 100 traces or breaches); past it the oldest are "
        "dropped.",
    )
    live_send_timeout: Duration = parsed("10s", "A live-feed client whose send takes longer is disconnected.")
    live_heartbeat: Duration = parsed("15s", "Interval of the live feed's heartbeat message.")
    dashboard: Path | None = Field(
        None, description="Directory of a built dashboard to serve at /; default: the one shipped in the package."
    )
