"""The end-to-end suite runs in both ingest modes: in the main process, and with ingest worker processes."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _both_ingest_modes(ingest_workers: int) -> int:
    return ingest_workers
