"""Print the query API's OpenAPI document: ``python -m collector.query.openapi > dashboard/openapi.json``.

The dashboard generates its API types from that snapshot; a test checks that it equals what the server serves.
"""

from __future__ import annotations

import json
from typing import Any

from collector.query.server import query_app


def document() -> dict[str, Any]:
    return query_app(reader=None, live=None, dashboard=None).openapi()  # type: ignore[arg-type]


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, sort_keys=True))
