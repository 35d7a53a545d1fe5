"""Day partitions of ``spans``: made ahead of time by upkeep, dropped whole by retention.
from collector.storage.postgres.connection import Connection

A partition holds the spans that started on one UTC day, ``spans_YYYYMMDD``; spans of a day without one
(a client clock far off) go to ``spans_default``. Upkeep makes the partitions of yesterday to ``AHEAD_DAYS``
from today, each as a table of its own that is then attached, so that writers go on meanwhile (attaching
takes SHARE UPDATE EXCLUSIVE on ``spans``, which inserts do not wait for); spans of that day that already
went to the default partition are moved into it first.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from psycopg import sql

from collector.storage.postgres.connection import Connection

DAY_NS = 86_400 * 1_000_000_000
AHEAD_DAYS = 3  # partitions made past today: a day of upkeep missed (no replica up) costs nothing
PREFIX = "spans_"
DEFAULT = "spans_default"


class Partition(NamedTuple):
    name: str
    lower: int  # first start time (unix ns) it holds
    upper: int  # first start time past it


def day_start(unix_ns: int) -> int:
    return unix_ns - unix_ns % DAY_NS


def for_day(lower: int) -> Partition:
    day = dt.datetime.fromtimestamp(lower // 1_000_000_000, dt.UTC)
    return Partition(f"{PREFIX}{day:%Y%m%d}", lower, lower + DAY_NS)


_LIST = """
SELECT child.relname FROM pg_inherits
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
WHERE parent.relname = 'spans' AND parent.relnamespace = current_schema()::regnamespace
"""


def day_partitions(connection: Connection) -> list[Partition]:
    """The day partitions of ``spans``, oldest first (the default partition is not one)."""
    partitions = []
    for (name,) in connection.execute(_LIST):
        if name == DEFAULT or not name.startswith(PREFIX):
            continue
        day = dt.datetime.strptime(name.removeprefix(PREFIX), "%Y%m%d").replace(tzinfo=dt.UTC)
        lower = int(day.timestamp()) * 1_000_000_000
        partitions.append(Partition(name, lower, lower + DAY_NS))
    return sorted(partitions, key=lambda partition: partition.lower)


def create(connection: Connection, partition: Partition) -> None:
    """Make and attach one day's partition; call inside a transaction holding ``MAINTENANCE_LOCK`` (or
    ``MIGRATIONS_LOCK``)."""
    table = sql.Identifier(partition.name)
    connection.execute(sql.SQL("CREATE TABLE {} (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(table))
    connection.execute(
        sql.SQL(
            "WITH moved AS (DELETE FROM spans_default WHERE start_time_unix_nano >= %s AND start_time_unix_nano < %s"
            " RETURNING *) INSERT INTO {} SELECT * FROM moved"
        ).format(table),
        (partition.lower, partition.upper),
    )
    connection.execute(  # DDL takes no parameters
        sql.SQL("ALTER TABLE spans ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            table, sql.Literal(partition.lower), sql.Literal(partition.upper)
        )
    )


def ensure(connection: Connection, now_ns: int, *, ahead_days: int = AHEAD_DAYS) -> list[str]:
    """Make the missing partitions from yesterday to ``ahead_days`` after today (never one older than the
    oldest there is: retention dropped those); returns their names. Call inside a transaction holding
    ``MAINTENANCE_LOCK``."""
    existing = day_partitions(connection)
    names = {partition.name for partition in existing}
    today = day_start(now_ns)
    first = today - DAY_NS
    if existing:
        first = max(first, existing[0].lower)
    made = []
    for lower in range(first, today + (ahead_days + 1) * DAY_NS, DAY_NS):
        partition = for_day(lower)
        if partition.name not in names:
            create(connection, partition)
            made.append(partition.name)
    return made


def covered_until(connection: Connection) -> int | None:
    """The first start time past the newest partition: upkeep is due before the clock gets near it."""
    partitions = day_partitions(connection)
    return partitions[-1].upper if partitions else None
