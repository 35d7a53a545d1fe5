"""The contract every storage engine passes, through the protocols only (``Store``, ``TraceReader``).

``store`` is parametrized by the engines of ``BACKENDS``: a name and how to make a fresh, empty database of
that engine for one test (its ``db`` location). A new engine proves itself by adding one line here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from collector.config import QuerySettings, Settings
from collector.genai.transform import Transform
from collector.model import Records
from collector.otlp import decode_spans
from collector.storage import Store, open_reader, open_store
from collector.storage.read import TraceReader
from tests.postgres import Cluster

T = TypeVar("T")


def sqlite_database(request: pytest.FixtureRequest, directory: Path, name: str) -> str:
    return str(directory / f"{name}.db")


def postgres_database(request: pytest.FixtureRequest, directory: Path, name: str) -> str:
    """A new database of the session's PostgreSQL cluster, dropped after the test."""
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    database = cluster.database(name, url=True)
    location = database.__enter__()
    request.addfinalizer(lambda: database.__exit__(None, None, None))
    return location


# name -> (the test's request, a directory of its own, a database name) -> the ``db`` location of a new database
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path, str], str]] = {
    "sqlite": sqlite_database,
    "postgres": postgres_database,
}


class Backend:
    """One engine under test: stores opened on fresh databases, readers of them, and the transform that turns
    OTLP requests into records as the daemon does."""

    def __init__(
        self, name: str, request: pytest.FixtureRequest, directory: Path, new_database: Callable[..., str]
    ) -> None:
        self.name = name
        self._request, self._directory, self._new_database = request, directory, new_database
        self._stores: list[Store] = []
        self._readers: list[TraceReader] = []
        self.transform = Transform(Settings())
        self.location = ""
        self.store = self.open()

    def open(self, name: str = "contract", **settings: Any) -> Store:
        """A store of a new database (``name``), with these daemon settings (``retention=...``); the first one
        opened is ``store``, and ``location`` names its database."""
        location = self._new_database(self._request, self._directory, name)
        self.location = self.location or location
        store = open_store(Settings.model_validate({"db": location, "sqlite_synchronous": "normal", **settings}))
        self._stores.append(store)
        return store

    def reader(self) -> TraceReader:
        """A reader of ``store``'s database, on connections of its own."""
        reader = open_reader(self.location, QuerySettings())
        self._readers.append(reader)
        return reader

    def differs_on(self, engine: str, why: str) -> None:
        """Skip (visibly) a test of behaviour ``engine`` documents as different, saying where and why."""
        if self.name == engine:
            pytest.skip(f"{engine} differs by design: {why}")

    def records(self, request: Any) -> Records:
        """An OTLP request's spans as the daemon stores them (normalized, priced, their evaluations found)."""
        spans, _ = decode_spans(request)
        return self.transform.spans(spans)[0]

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        for store in self._stores:
            store.close()


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(request.param, request, tmp_path, BACKENDS[request.param])
    try:
        yield backend
    finally:
        backend.close()


def run(read: Coroutine[Any, Any, T]) -> T:
    """A reader's answer, from a test outside any event loop."""
    return asyncio.run(read)


def skeleton(reader: TraceReader, trace_id: str, offset: int = 0, limit: int = 100_000) -> tuple[Any, Any] | None:
    """A trace's summary and a page of its skeleton (decoded from the JSON the reader gives), or None."""
    found = run(reader.trace_skeleton(trace_id, offset, limit))
    if found is None:
        return None
    assert found["total_spans"] == found["trace"]["span_count"]
    return found["trace"], json.loads(found["spans_json"])
