"""The bounded queue between the receivers and storage: batching, backpressure, acknowledgement after commit."""

from collector.pipeline.queue import (
    SATURATION,
    Backpressure,
    InvalidData,
    Pipeline,
    QueueFull,
    Reservation,
    ShuttingDown,
    TooManyRequests,
    WriteFailed,
    is_data_error,
)

__all__ = [
    "SATURATION",
    "Backpressure",
    "InvalidData",
    "Pipeline",
    "QueueFull",
    "Reservation",
    "ShuttingDown",
    "TooManyRequests",
    "WriteFailed",
    "is_data_error",
]
