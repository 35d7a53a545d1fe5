"""What the main process gives each ingest worker."""

from __future__ import annotations

from collector.config import Settings
from collector.workers.pool import worker_settings


def test_the_bounds_of_the_collector_are_shared_among_its_workers() -> None:
    settings = Settings.model_validate(
        {"ingest": {"workers": 3}, "max_concurrent_requests": 64, "auth": {"max_failures_per_minute": 30}}
    )
    share = worker_settings(settings)
    assert (share.max_concurrent_requests, share.auth.max_failures_per_minute) == (22, 10)
    assert share.servers["otlp_http"].limits.max_concurrent_requests == 22
    unlimited = Settings.model_validate({"ingest": {"workers": 2}, "auth": {"max_failures_per_minute": 0}})
    assert worker_settings(unlimited).auth.max_failures_per_minute == 0  # 0 stays "no limit"
