"""Choosing a storage engine by the scheme of ``db``: a plain path or ``sqlite://`` is SQLite.

Engines are imported by name from ``ENGINES`` (as uvicorn maps names to protocol classes), so that an
engine's driver is imported only when it is used. ``postgresql://`` and ``postgres://`` are PostgreSQL
(the whole URL goes to libpq: ``PG*`` environment variables and ``sslmode`` work as usual).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from collector.storage.errors import StoreUnopenable

if TYPE_CHECKING:
    from collections.abc import Callable

    from collector.component import Component
    from collector.config import QuerySettings, Settings
    from collector.model import Records
    from collector.observability.metrics import CollectorMetrics
    from collector.storage.read import TraceReader
    from collector.storage.store import Store


class Engine(NamedTuple):
    """Where an engine's openers are, as ``module:function``; each takes the location without its scheme."""

    store: str  # (location, settings) -> Store
    reader: str  # (location, query settings) -> TraceReader
    prepare: str  # (records) -> records: ``SpanStore.prepare``, without a store (a worker process has none)
    companions: str = ""  # (store, metrics) -> components that run beside the store (SQLite's WAL checkpoints)


_SQLITE = Engine(
    "collector.storage.sqlite.engine:open_store",
    "collector.storage.sqlite.engine:open_reader",
    "collector.storage.sqlite.writer:prepare",
    "collector.storage.sqlite.engine:companions",
)
_POSTGRES = Engine(
    "collector.storage.postgres.engine:open_store",
    "collector.storage.postgres.engine:open_reader",
    "collector.storage.postgres.writer:prepare",
)

ENGINES: dict[str, Engine | None] = {
    "": _SQLITE,  # a plain path
    "sqlite": _SQLITE,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?://)?")


def split_location(db: str | Path) -> tuple[str, str]:
    """(scheme, the rest): ``sqlite:///var/lib/spans.db`` -> ("sqlite", "/var/lib/spans.db"), a plain path ->
    ("", the path). A one-letter scheme is a Windows drive, not a scheme."""
    text = str(db)
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) == 1:
        return "", text
    return match.group(1).lower(), text[match.end() :]


def _engine(db: str | Path) -> tuple[Engine, str]:
    scheme, location = split_location(db)
    if scheme not in ENGINES:
        known = ", ".join(f"{name}://" for name in ENGINES if name)
        raise StoreUnopenable(f"db: unknown storage scheme {scheme}:// in {db} (use a file path, or one of {known})")
    engine = ENGINES[scheme]
    if engine is None:
        raise StoreUnopenable(
            f"db: the {scheme} storage engine is not available in this version yet; use a SQLite file path"
        )
    return engine, location


def _load(target: str) -> Any:
    """``module:name``, imported on first use (an engine's driver is needed only when it is chosen)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def open_store(settings: Settings) -> Store:
    """The write side of the engine ``settings.db`` names, opened and migrated. Raises ``StoreUnopenable``."""
    engine, location = _engine(settings.db)
    opener: Callable[[str, Settings], Store] = _load(engine.store)
    return opener(location, settings)


def store_companions(db: str | Path, store: Store, metrics: CollectorMetrics) -> list[Component]:
    """The components the engine ``db`` names runs beside its open ``store``, started after it and stopped before."""
    engine, _ = _engine(db)
    if not engine.companions:
        return []
    companions: Callable[[Store, CollectorMetrics], list[Component]] = _load(engine.companions)
    return companions(store, metrics)


def open_reader(db: str | Path, query: QuerySettings) -> TraceReader:
    """The read side of the engine ``db`` names, on connections of its own."""
    engine, location = _engine(db)
    opener: Callable[[str, QuerySettings], TraceReader] = _load(engine.reader)
    return opener(location, query)


def records_preparer(db: str | Path) -> Callable[[Records], Records]:
    """The ``SpanStore.prepare`` of the engine ``db`` names, without opening it: what a process that decodes
    requests but does not write (an ingest worker) runs on each request's records before handing them on."""
    engine, _ = _engine(db)
    prepare: Callable[[Records], Records] = _load(engine.prepare)
    return prepare
