"""Why a request was not stored: backpressure the client may retry, or data the database refused."""

from __future__ import annotations

import apsw


class Backpressure(Exception):
    """The request was not stored and may be retried; ``reason`` labels the refusal in metrics."""

    reason = "unavailable"


class QueueFull(Backpressure):
    reason = "queue_full"


class ShuttingDown(Backpressure):
    reason = "shutting_down"


class WriteFailed(Backpressure):
    reason = "write_failed"


class InvalidData(Exception):
    """The database refused a request's own data (an integer overflow, say): retrying cannot help, so
    it is answered 400 / INVALID_ARGUMENT, and the requests that shared its batch are committed without it."""

    reason = "invalid_data"


# Errors caused by the rows written, not by the disk or a lock: the request that caused one is isolated.
_DATA_ERRORS = (apsw.ConstraintError, apsw.MismatchError, apsw.TooBigError, apsw.RangeError)


def is_data_error(failure: apsw.Error) -> bool:
    """Whether the rows written caused ``failure`` (an integer overflow in a sum is a generic SQLError)."""
    return isinstance(failure, _DATA_ERRORS) or (isinstance(failure, apsw.SQLError) and "overflow" in str(failure))


class TooManyRequests(Backpressure):
    """More requests in progress than ``max_concurrent_requests``: the event loop, not the queue, is the limit."""

    reason = "too_many_requests"
