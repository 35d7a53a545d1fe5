"""Why storage failed, in terms the pipeline and the service act on without knowing the engine.

Each engine translates its own errors at its boundary (``storage.sqlite.errors``): the pipeline answers
``StorageUnavailable`` with 503 / UNAVAILABLE and a retry hint, isolates the request behind ``RowsRefused``
and answers it 400 / INVALID_ARGUMENT, and the service turns ``StoreUnopenable`` into a readable start-up error.
"""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed. ``kind`` is the engine's name for the failure (``FullError``,
    ``53100``...): it labels ``genai_collector_write_failures`` and the logs, never a response."""

    retryable = True

    def __init__(self, message: str, *, kind: str = "internal") -> None:
        super().__init__(message)
        self.kind = kind


class StorageUnavailable(StorageError):
    """The store cannot take the write now (disk full, locked or busy, I/O error, connection lost):
    the same request may succeed later."""


class RowsRefused(StorageError):
    """The store refused the rows themselves (an integer overflow, a constraint): retrying cannot help."""

    retryable = False


class StoreUnopenable(StorageError):
    """The store cannot be opened at start-up; the message says what to change."""

    retryable = False
