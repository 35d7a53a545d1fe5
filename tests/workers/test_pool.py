"""What the main process gives each ingest worker."""

from __future__ import annotations

from collector.config import Settings
from collector.workers.pool import worker_settings


def test_the_bounds_of_the_collector_are_shared_among_its_workers() -> None:
    settings = Settings.model_validate(
        {"ingest": {"workers": 3}, "max_concurrent_requests": 64, "auth": {"max_failures_per_minute": 30}}
    )
    share = worker_settings(settings)
    assert share.max_concurrent_requests == 22
    assert share.servers["otlp_http"].limits.max_concurrent_requests == 22
    # every worker counts wrong keys into the main process's table: the limit is the collector's, not shared out
    assert share.auth.max_failures_per_minute == 30
