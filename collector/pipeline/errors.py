"""Why a request was not stored: backpressure the client may retry, or data the database refused."""

from __future__ import annotations


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


class TooManyRequests(Backpressure):
    """More requests in progress than ``max_concurrent_requests``: the event loop, not the queue, is the limit."""

    reason = "too_many_requests"
