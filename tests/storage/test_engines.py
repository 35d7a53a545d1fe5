"""Choosing the engine by the scheme of ``db``, and the start-up errors a wrong one gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.config import Settings
from collector.service import Service, StartupError
from collector.storage import ENGINES, StoreUnopenable, open_store
from collector.storage.engines import split_location
from collector.storage.sqlite.writer import SpanWriter


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


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_is_reserved_with_a_clear_startup_error(scheme: str) -> None:
    assert scheme in ENGINES
    settings = Settings(db=f"{scheme}://collector@localhost/genai")
    if ENGINES[scheme] is None:
        with pytest.raises(StoreUnopenable, match=f"the {scheme} storage engine is not available"):
            open_store(settings)
        with pytest.raises(StartupError, match=f"the {scheme} storage engine is not available"):
            asyncio.run(Service(settings).start())


def test_an_unknown_scheme_says_which_ones_there_are() -> None:
    with pytest.raises(StoreUnopenable, match=r"unknown storage scheme mysql:// .*sqlite://"):
        open_store(Settings(db="mysql://localhost/genai"))
