"""A fresh database of the session's PostgreSQL cluster (``tests/conftest.py``) for each test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import Cluster


@pytest.fixture(scope="module")
def postgres_dsn(postgres_cluster: Cluster) -> Iterator[str]:
    with postgres_cluster.database() as dsn:
        yield dsn
