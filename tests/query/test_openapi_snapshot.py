"""The dashboard's API types are generated from dashboard/openapi.json: that snapshot must be what the server
serves, so an API change that the dashboard has not caught up with fails here (refresh it: ``make openapi``)."""

from __future__ import annotations

import json

import httpx

from tests.conftest import RunningCollector
from tests.helpers import REPO

SNAPSHOT = REPO / "dashboard" / "openapi.json"


def test_the_dashboards_openapi_snapshot_is_what_the_server_serves(collector: RunningCollector) -> None:
    served = httpx.get(f"{collector.query_url}/api/v1/openapi.json", timeout=10).json()
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert served["paths"].keys() == committed["paths"].keys(), "paths differ: run `make openapi` and rebuild"
    assert served == committed, "dashboard/openapi.json is stale: run `make openapi`, then fix the dashboard's types"
