"""The bounded queue between the receivers and storage: batching, backpressure, acknowledgement after commit."""

from collector.pipeline.errors import (
    Backpressure,
    InvalidData,
    QueueFull,
    ShuttingDown,
    TooManyRequests,
    WriteFailed,
)
from collector.pipeline.observers import Observers
from collector.pipeline.queue import SATURATION, Intake, Pipeline, Reservation, WriterWork

__all__ = [
    "SATURATION",
    "Backpressure",
    "Intake",
    "InvalidData",
    "Observers",
    "Pipeline",
    "QueueFull",
    "Reservation",
    "ShuttingDown",
    "TooManyRequests",
    "WriteFailed",
    "WriterWork",
]
