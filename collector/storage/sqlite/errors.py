"""SQLite's errors translated into the ``StorageError`` family at the engine's boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import apsw

from collector.storage.errors import RowsRefused, StorageError, StorageUnavailable

# Errors caused by the rows written, not by the disk or a lock: the request that caused one is isolated.
_DATA_ERRORS = (apsw.ConstraintError, apsw.MismatchError, apsw.TooBigError, apsw.RangeError)


def is_data_error(failure: apsw.Error) -> bool:
    """Whether the rows written caused ``failure`` (an integer overflow in a sum is a generic SQLError)."""
    return isinstance(failure, _DATA_ERRORS) or (isinstance(failure, apsw.SQLError) and "overflow" in str(failure))


def translate(failure: apsw.Error) -> StorageError:
    """The storage error ``failure`` means: refused rows, or (a full disk, a lock, I/O...) worth a retry."""
    kind = type(failure).__name__
    if is_data_error(failure):
        return RowsRefused(str(failure), kind=kind)
    return StorageUnavailable(str(failure), kind=kind)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise any ``apsw.Error`` of the block as the ``StorageError`` it means (the original as its cause)."""
    try:
        yield
    except apsw.Error as failure:
        raise translate(failure) from failure
