"""Choosing the engine by the scheme of ``db``, and the start-up errors a wrong one gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.config import Settings
from collector.service import Service, StartupError
from collector.storage import StoreUnopenable, open_store
from collector.storage.engines import split_location
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import free_ports


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("data/spans.db", ("", "data/spans.db")),
        ("/var/lib/spans.db", ("", "/var/lib/spans.db")),
        ("sqlite:///var/lib/spans.db", ("sqlite", "/var/lib/spans.db")),
        ("sqlite://data/spans.db", ("sqlite", "data/spans.db")),
        ("SQLite:spans.db", ("sqlite", "spans.db")),
        ("postgresql://collector@db:5432/genai", ("postgresql", "collector@db:5432/genai")),
        ("C:/data/spans.db", ("", "C:/data/spans.db")),  # a drive letter is no scheme
    ],
)
def test_the_scheme_of_db_names_the_engine(db: str, expected: tuple[str, str]) -> None:
    assert split_location(db) == expected


@pytest.mark.parametrize("db", ["plain.db", "sqlite://{tmp}/scheme.db"])
def test_a_path_or_sqlite_url_opens_sqlite(tmp_path: Path, db: str) -> None:
    store = open_store(Settings(db=db.format(tmp=tmp_path) if "{tmp}" in db else tmp_path / db))
    try:
        assert isinstance(store, SpanWriter)
        assert store.disk_usage()["main"] > 0
    finally:
        store.close()


@pytest.mark.parametrize(
    ("db", "path"),
    [
        ("sqlite:spans.db", "spans.db"),
        ("sqlite:data/spans.db", "data/spans.db"),
        ("sqlite://./data/spans.db", "data/spans.db"),
        ("sqlite://data/spans.db", "data/spans.db"),
        ("SQLITE://data/spans.db", "data/spans.db"),
        ("sqlite:///{tmp}/absolute.db", "{tmp}/absolute.db"),
    ],
)
def test_a_sqlite_url_names_its_path_relative_unless_it_starts_with_a_slash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str, path: str
) -> None:
    """The path of a sqlite: URL is what follows the scheme and its empty authority (``//``): the file opened is
    that path, relative to the working directory unless it starts with ``/``."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    absolute = str(tmp_path).lstrip("/")
    settings = Settings(db=db.format(tmp=absolute))
    assert settings.db == Path(path.format(tmp="/" + absolute))
    open_store(settings).close()
    expected = Path(path.format(tmp="/" + absolute))
    assert (expected if expected.is_absolute() else work / expected).is_file()
    assert sorted(p.name for p in tmp_path.glob("*.db")) == (["absolute.db"] if expected.is_absolute() else [])


def test_a_sqlite_url_without_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="names no database file"):
        Settings(db="sqlite://")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_opens_postgresql_and_an_unreachable_one_stops_start_up(scheme: str) -> None:
    """The URL is kept whole (not folded as a path) and goes to libpq; a server that cannot be reached is a
    start-up error that names it."""
    (port,) = free_ports(1)
    settings = Settings(db=f"{scheme}://collector@127.0.0.1:{port}/genai?connect_timeout=2")
    assert settings.db == f"{scheme}://collector@127.0.0.1:{port}/genai?connect_timeout=2"
    with pytest.raises(StoreUnopenable, match="cannot reach PostgreSQL"):
        open_store(settings)
    with pytest.raises(StartupError, match="cannot reach PostgreSQL"):
        asyncio.run(Service(settings).start())


def test_an_unknown_scheme_says_which_ones_there_are() -> None:
    with pytest.raises(StoreUnopenable, match=r"unknown storage scheme mysql:// .*sqlite://"):
        open_store(Settings(db="mysql://localhost/genai"))


def test_records_preparer_is_the_engines_prepare_without_a_store(tmp_path: Path) -> None:
    """What an ingest worker process calls on each request's records: SQLite encodes the rows ahead, PostgreSQL
    leaves them to its writer; the scheme picks it, as it picks the store, and nothing is opened."""
    from collector.model import Records
    from collector.otlp import decode_spans
    from collector.storage.engines import records_preparer
    from collector.storage.sqlite.rows import SpanRows
    from tests.helpers import otlp_request

    spans, _ = decode_spans(otlp_request(2))
    prepared = records_preparer(tmp_path / "spans.db")(Records(spans=spans)).prepared
    assert isinstance(prepared, SpanRows) and len(prepared.resources) == 1
    assert records_preparer("postgresql://nowhere.invalid/db")(Records(spans=spans)).prepared is None
    assert not (tmp_path / "spans.db").exists()


def test_sqlite_runs_its_wal_checkpoints_beside_the_store_and_postgresql_nothing(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from collector.observability.metrics import CollectorMetrics
    from collector.storage import store_companions
    from collector.storage.sqlite.checkpoint import WalCheckpointer

    metrics = CollectorMetrics(CollectorRegistry())
    store = open_store(Settings(db=tmp_path / "spans.db"))
    try:
        companions = store_companions(tmp_path / "spans.db", store, metrics)
        assert [(type(each), each.path) for each in companions] == [(WalCheckpointer, tmp_path / "spans.db")]  # type: ignore[attr-defined]
        assert store_companions("postgresql://nowhere.invalid/db", store, metrics) == []
    finally:
        store.close()
