"""The write and maintenance sides of storage, as protocols any backend implements.

``SpanStore`` commits batches of records; ``Maintenance`` settles quiet traces, applies retention and
reports the store's size; a ``Store`` is both, owned by the pipeline's writer thread (its methods are
called from that one thread). The read side is ``storage.read.TraceReader``, on connections of its own.
Records here are engine-neutral; what a settled trace measured is worked out by
``collector.maintenance.settle``, not by the store, which only reads the rows and writes the snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from collector.model import Records, SpanSummary

if TYPE_CHECKING:
    from collector.maintenance.snapshots import Snapshot


class Written(NamedTuple):
    """What one committed batch stored."""

    stored: list[SpanSummary]  # the summaries of the spans stored for the first time (not those sent again)
    repeated_calls: frozenset[tuple[str, str]]  # (trace id, span id) of those whose call another span counts


NOTHING_WRITTEN = Written([], frozenset())


@dataclass(frozen=True, slots=True)
class SettleWindow:
    """Which traces are due to settle at ``now_ns``, and what the rules need read of them."""

    now_ns: int
    settle_after_ns: int  # a rooted trace settles once no span came for this long
    max_wait_ns: int  # a trace without root settles this long after its first span
    limit: int  # traces per round (one transaction)
    evaluation_names: tuple[str, ...] = ()  # the lowest score of each of these is read
    ttft: bool = False  # whether the worst time to first token is read


class UnsettledTrace(NamedTuple):
    """A trace due to settle, as stored: its rollup and the figures of its spans the rules ask for."""

    trace_id: str
    service_name: str | None
    models: tuple[str, ...]
    agents: tuple[str, ...]
    duration_ns: int
    cost_usd: float | None
    total_tokens: int
    error_count: int
    llm_calls: int
    worst_ttft_ms: float | None
    lowest_scores: Mapping[str, float]  # by evaluation name


class SettledTrace(NamedTuple):
    """What settling wrote for one trace."""

    trace: UnsettledTrace
    snapshots: list[Snapshot]
    newly_breached: list[Snapshot]  # breached now, and not already breached before this settling


# The snapshots of a trace due to settle: a pure function of what is stored (``maintenance.settle``).
Judge = Callable[[UnsettledTrace], "list[Snapshot]"]


@dataclass
class Deleted:
    """What one retention step removed and gave back; ``more`` asks to be called again after the next batch."""

    reason: str = ""  # age, size or disk_full
    traces: int = 0
    spans: int = 0
    snapshots: int = 0
    reclaimed_bytes: int = 0
    more: bool = False


class SpanStore(Protocol):
    """The write side: commit a batch of records in one transaction."""

    def prepare(self, records: Records) -> Records:
        """The part of ``write``'s work on ``records`` that needs no connection (encoding the rows), done
        ahead by the thread or process that decoded them, so that the single writer only writes. Pure and
        safe on any thread; returns the records with ``Records.prepared`` set, or as they are."""
        ...

    def write(self, batch: Sequence[Records]) -> Written:
        """Store and commit ``batch``; idempotent (a span, log record or evaluation sent again is stored
        once). Returns the summaries of the spans stored for the first time. Raises ``StorageError``:
        ``RowsRefused`` when the rows themselves were refused (nothing of the batch is stored),
        ``StorageUnavailable`` otherwise."""
        ...

    def close(self) -> None: ...


class SettlePlan(Protocol):
    """What a ``SettleReader`` read and judged: the traces due, their snapshots and what settling them writes,
    for the writer to apply (``Maintenance.apply_settled``); its content is the engine's."""

    @property
    def count(self) -> int:
        """The traces read (``window.limit`` of them: more may be due)."""
        ...


class SettleReader(Protocol):
    """The reading half of settling, for the writer's thread between two batches (``Maintenance.settle_reader``)."""

    def read(self, window: SettleWindow, judge: Judge) -> SettlePlan | None:
        """Read up to ``window.limit`` traces due to settle and judge them, writing nothing; None when none is due."""
        ...


class Maintenance(Protocol):
    """Work on what is stored, run between batches on the writer's thread."""

    def settle(self, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
        """In one transaction: read up to ``window.limit`` traces due to settle, write the snapshots
        ``judge`` makes of each (upserted by trace and metric) and mark them settled."""
        ...

    def settle_reader(self) -> SettleReader | None:
        """The reader of the traces due, whose plans ``apply_settled`` writes after the next batch: a round in two
        short steps instead of one long one (SQLite). None when the engine settles whole (``settle``: PostgreSQL,
        in transactions of its own on pooled connections, beside the other replicas)."""
        ...

    def apply_settled(self, plan: SettlePlan) -> list[SettledTrace]:
        """In one transaction: write what ``plan`` says of the traces that got no span since it was read, and
        mark them settled; the others are left unsettled, to be read again once quiet."""
        ...

    def oldest_unsettled(self) -> int | None:
        """When the longest-quiet unsettled trace got its last span (unix ns), or None when all are settled."""
        ...

    def ping(self) -> None:
        """One cheap round trip to the database; raises ``StorageUnavailable`` when it cannot be reached now."""
        ...

    def retain(self, now_ns: int | None = None) -> list[Deleted]:
        """A small piece of retention (by age, by size, the engine's own upkeep), as of ``now_ns`` (now)."""
        ...

    def flush(self) -> None:
        """Write out what the store keeps in memory across transactions (SQLite: the latency histograms' counts
        of the spans stored since the last flush; readers see those spans meanwhile): once a second, and at close."""
        ...

    @property
    def oldest_trace_ns(self) -> int | None:
        """When the oldest stored trace got its last span, as of the last retention step."""
        ...

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk by file (the ``file`` label of ``genai_collector_database_size_bytes``); safe to call
        from any thread (it runs at scrape time)."""
        ...


class Store(SpanStore, Maintenance, Protocol):
    """A storage engine's write connection: what the pipeline and the maintenance jobs use."""
