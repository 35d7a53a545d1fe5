"""The PostgreSQL cluster of the session and a fresh database for each test module (``tests/postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import Cluster, start_cluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    yield from start_cluster()


@pytest.fixture(scope="module")
def postgres_dsn(postgres_cluster: Cluster) -> Iterator[str]:
    with postgres_cluster.database() as dsn:
        yield dsn
