"""What both SQL engines' readers do alike: run a read on a worker thread (bounded in number), and the reads whose
statements are ``storage/sql.py``'s and whose rows are shaped the same on both engines.

An engine's reader (``sqlite/read.py``, ``postgres/read.py``) subclasses ``SqlReader``: it gives its dialect, runs
one read in one snapshot on a connection of its own (``_call``) and fetches a statement's rows (``_rows``), and
keeps the reads that differ (trace summaries, spans, skeletons, latency, evaluation statistics, Jaeger search).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from collector.storage.read import (
    COST_FIELDS,
    BreachQuery,
    CostGroup,
    EvaluationQuery,
    Keyset,
    Model,
    Page,
    QueryTooBroad,
    ReadBusy,
    StatsRange,
)
from collector.storage.sql import (
    BREACH_FIELDS,
    DEPENDENCIES,
    EVALUATION_FIELDS,
    MODELS,
    OPERATIONS_SCAN,
    SERVICES,
    Dialect,
    breaches_sql,
    cost_sql,
    evaluations_sql,
    operations_sql,
    spend_by_model,
)

T = TypeVar("T")
C = TypeVar("C")  # an engine's connection
_WAITING_PER_CONNECTION = 16


def too_broad(statement_timeout: float) -> QueryTooBroad:
    return QueryTooBroad(
        f"the query ran longer than the {statement_timeout:g}s statement timeout; narrow the time range or add filters"
    )


def first_traces(rows: Iterable[Sequence[Any]], limit: int) -> list[str]:
    """The first ``limit`` distinct trace ids of ``rows`` (``(trace_id,)`` each), in order: a Jaeger search walks
    the matching spans newest first and stops there."""
    found: dict[str, None] = {}
    for (trace_id,) in rows:
        found[trace_id] = None
        if len(found) >= limit:
            break
    return list(found)


def keyset_page(rows: list[dict[str, Any]], limit: int, position: Callable[[dict[str, Any]], Keyset]) -> Page:
    """A page of ``limit`` rows out of ``limit + 1`` read, with the position after it when there are more."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(data=rows, after=position(rows[-1]) if more and rows else None)


class SqlReader(ABC, Generic[C]):
    """A ``TraceReader``'s shared half over connections of type ``C``, ``connections`` reads at once."""

    dialect: Dialect

    def __init__(self, connections: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="trace-reader")
        self._slots = connections * _WAITING_PER_CONNECTION
        self._in_flight = 0
        d = self.dialect
        self._services, self._dependencies, self._models = (
            d.statement(sql) for sql in (SERVICES, DEPENDENCIES, MODELS)
        )
        self._spend_by_model = spend_by_model(d)

    @abstractmethod
    def _call(self, work: Callable[[C], T]) -> T:
        """``work`` on a connection of the reader's, in one read snapshot (on the calling worker thread)."""

    @abstractmethod
    def _rows(self, connection: C, sql: str, params: Any) -> Iterable[Sequence[Any]]:
        """The rows of one statement."""

    async def _run(self, work: Callable[[C], T]) -> T:
        """``work`` on a worker thread; refused with ``ReadBusy`` when every connection and its wait list is busy."""
        if self._in_flight >= self._slots:
            raise ReadBusy("too many queries in progress; retry shortly")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)
        finally:
            self._in_flight -= 1

    def _shut_down(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _records(self, fields: Sequence[str], sql: str, params: Any) -> Callable[[C], list[dict[str, Any]]]:
        return lambda connection: [dict(zip(fields, row, strict=True)) for row in self._rows(connection, sql, params)]

    # -- stats --

    async def cost(self, stats: StatsRange, group_by: CostGroup) -> list[dict[str, Any]]:
        sql, params = cost_sql(self.dialect, stats, group_by)

        def work(connection: C) -> list[dict[str, Any]]:
            series: dict[Any, list[dict[str, Any]]] = {}
            for bucket, group, *figures in self._rows(connection, sql, params):
                point = {"time_unix_nano": bucket, **dict(zip(COST_FIELDS, figures, strict=True))}
                series.setdefault(group, []).append(point)
            return [{"group": group, "points": points} for group, points in series.items()]

        return await self._run(work)

    # -- feeds --

    async def breaches(self, query: BreachQuery) -> Page:
        read = self._records(BREACH_FIELDS, *breaches_sql(self.dialect, query))

        def work(connection: C) -> Page:
            rows = read(connection)
            for row in rows:
                row["breached"] = bool(row["breached"])
            return keyset_page(rows, query.limit, lambda row: (row["computed_at_unix_nano"], row["id"]))

        return await self._run(work)

    async def evaluations(self, query: EvaluationQuery) -> Page:
        read = self._records(EVALUATION_FIELDS, *evaluations_sql(self.dialect, query))
        return await self._run(
            lambda connection: keyset_page(
                read(connection), query.limit, lambda row: (row["time_unix_nano"], row["id"])
            )
        )

    # -- what the filters can offer --

    async def services(self) -> list[str]:
        return await self._run(lambda connection: [name for (name,) in self._rows(connection, self._services, ())])

    async def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        """Span names and kinds of the service's newest ``OPERATIONS_SCAN`` spans: a dropdown's worth, read
        newest first through the (service, start) index, without reading every span the service ever sent."""
        sql = operations_sql(self.dialect, kind)
        params = {"service": service, "kind": kind, "limit": OPERATIONS_SCAN}
        return await self._run(
            lambda connection: sorted({(name, kind) for name, kind in self._rows(connection, sql, params)})
        )

    async def models(self, start_ns: int, end_ns: int) -> list[Model]:
        params = {"start_ns": start_ns, "end_ns": end_ns}
        return await self._run(
            lambda connection: [
                Model(name=model, provider=provider, calls=calls)
                for model, provider, calls in self._rows(connection, self._models, params)
            ]
        )

    async def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        params = {"start_ns": start_ns, "end_ns": end_ns}
        return await self._run(
            lambda connection: [
                (parent, child, count) for parent, child, count in self._rows(connection, self._dependencies, params)
            ]
        )

    async def spend_by_model(self, start_ns: int) -> list[dict[str, Any]]:
        fields = ("model", "cost_usd", "input_tokens", "output_tokens", "llm_requests")
        return await self._run(self._records(fields, self._spend_by_model, {"start_ns": start_ns}))
