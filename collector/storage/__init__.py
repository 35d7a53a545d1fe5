"""Storage: the engine-neutral protocols (``store`` for writing and maintenance, ``read`` for queries),
the ``StorageError`` family, and ``open_store`` / ``open_reader``, which pick an engine by the scheme of ``db``.
One folder per engine (``sqlite/``); the only code that speaks SQL lives there."""

from collector.storage.engines import ENGINES, open_reader, open_store, store_companions
from collector.storage.errors import RowsRefused, StorageError, StorageUnavailable, StoreUnopenable
from collector.storage.store import NOTHING_WRITTEN, Deleted, Maintenance, SpanStore, Store, Written

__all__ = [
    "ENGINES",
    "NOTHING_WRITTEN",
    "Deleted",
    "Maintenance",
    "RowsRefused",
    "SpanStore",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "StoreUnopenable",
    "Written",
    "open_reader",
    "open_store",
    "store_companions",
]
