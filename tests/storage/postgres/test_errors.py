"""What a PostgreSQL failure means for the request: retry later, or refuse its data; from a real server."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import psycopg
import pytest

from collector.config import Settings
from collector.model import Records
from collector.observability import logs
from collector.otlp.protobuf import decode_spans
from collector.storage import StorageUnavailable, StoreUnopenable
from collector.storage.postgres.connection import connect
from collector.storage.postgres.engine import open_store
from collector.storage.postgres.errors import is_conflict, is_data_error, is_retryable
from collector.storage.postgres.notify import SettledListener
from collector.storage.postgres.writer import PostgresSpanWriter
from tests.helpers import otlp_request, wait_until
from tests.postgres import Cluster, server_binaries


def failure_of(dsn: str, statement: str) -> psycopg.Error:
    with connect(dsn) as connection, pytest.raises(psycopg.Error) as raised:
        connection.execute(statement)
    return raised.value


@pytest.mark.parametrize(
    ("statement", "data", "retryable"),
    [
        ("SELECT 9223372036854775807::bigint + 1", True, False),  # numeric out of range
        ('SELECT \'{"a": "\\u0000"}\'::jsonb', True, False),  # a NUL in jsonb
        ("SELECT repeat('x', 3000)::char(1)::int", True, False),  # invalid input
        ("SELECT 1/0", True, False),
        ("SELECT * FROM no_such_table", False, False),  # a bug of ours: neither
        ("SELECT pg_terminate_backend(pg_backend_pid())", False, True),  # the connection is cut
    ],
)
def test_errors_from_the_server_are_told_apart(postgres_dsn: str, statement: str, data: bool, retryable: bool) -> None:
    failure = failure_of(postgres_dsn, statement)
    assert (is_data_error(failure), is_retryable(failure)) == (data, retryable), failure


def test_a_nul_byte_refused_by_psycopg_itself_is_a_data_error(postgres_dsn: str) -> None:
    with connect(postgres_dsn) as connection, pytest.raises(psycopg.Error) as raised:
        connection.execute("SELECT %s::text", ("a\x00b",))
    assert is_data_error(raised.value) and not is_retryable(raised.value)


def test_a_deadlock_is_a_retryable_conflict() -> None:
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")
    assert is_conflict(deadlock) and is_retryable(deadlock) and not is_data_error(deadlock)


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, to stop and start without disturbing the others."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server binaries are not installed")
    cluster = Cluster(binaries).start()
    try:
        yield cluster
    finally:
        cluster.remove()


def test_a_lost_connection_or_a_stopped_server_is_retryable_and_the_writer_recovers(own_cluster: Cluster) -> None:
    with own_cluster.database() as dsn:
        writer = PostgresSpanWriter(dsn)
        spans, _ = decode_spans(otlp_request(3))
        writer.write([Records(spans=spans[:1])])
        # every connection cut, as by a failover: the pool's connection is found dead and replaced
        with connect(dsn) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND datname = current_database()"
            )
        assert len(writer.write([Records(spans=spans[1:2])]).stored) == 1
        own_cluster.stop()
        writer.pool.timeout = 1.0
        with pytest.raises(StorageUnavailable) as down:
            writer.write([Records(spans=spans[2:])])
        assert is_retryable(down.value.__cause__) and down.value.retryable
        own_cluster.resume()
        assert len(writer.write([Records(spans=spans)]).stored) == 1  # the request kept by the client, retried
        with writer.pool.connection() as connection:
            assert connection.execute("SELECT span_count FROM traces").fetchall() == [(3,)]
        writer.close()


def test_the_engine_opens_a_store_from_its_url_and_says_what_to_check_when_it_cannot(postgres_cluster: Cluster) -> None:
    settings = Settings.model_validate({})
    with postgres_cluster.database() as dsn:
        database = dsn.rsplit("dbname=", 1)[1]
        store = open_store(
            f"postgres@/{database}?host={postgres_cluster.socket_dir}&port={postgres_cluster.port}", settings
        )
        assert store.write([Records()]).stored == [] and store.disk_usage()["tables"] > 0
        store.close()
    with pytest.raises(StoreUnopenable, match="cannot reach PostgreSQL"):
        open_store(f"postgres@/nowhere?host={postgres_cluster.socket_dir}&port=1", settings)


def test_an_outage_is_logged_when_it_begins_once_a_minute_while_it_lasts_and_when_it_ends(
    own_cluster: Cluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's pool (at every batch) and the live feed's listener (every second) keep trying while the server
    is away: the log says so when it begins, then at most every ``OUTAGE_REPEAT_SECONDS``, and when it is back,
    never with psycopg_pool's warning per attempt."""
    caplog.set_level(logging.INFO)
    pool, listening = "pool 'genai-collector-writer'", "the live feed's listener"

    def outage_lines(who: str) -> list[tuple[str, str]]:
        """The levels and messages (up to the error, with N for the seconds) of ``who``'s outage lines."""
        return [
            (record.levelname, re.sub(r"\d+ s\b", "N s", record.getMessage().split(":")[0]))
            for record in caplog.records
            if record.getMessage().startswith(f"PostgreSQL ({who})")
        ]

    spans, _ = decode_spans(otlp_request(2))

    def write_fails() -> None:
        with pytest.raises(StorageUnavailable):
            writer.write([Records(spans=spans)])

    with own_cluster.database() as dsn:
        writer = PostgresSpanWriter(dsn)
        writer.pool.timeout = 1.0
        listener = SettledListener(dsn, lambda trace_ids: None)
        listener.start()
        with writer.pool.connection():  # connected: an outage of another test's pool of that name is over
            caplog.clear()
        try:
            own_cluster.stop()
            for _ in range(3):
                write_fails()
            wait_until(lambda: listener.outage.failures >= 3, 30, "three failed attempts of the listener")
            for who in (pool, listening):
                assert outage_lines(who) == [("WARNING", f"PostgreSQL ({who}) unreachable, trying again")]
            assert not [record for record in caplog.records if "error connecting" in str(record.msg)]

            def another_failure_each() -> None:
                failures = listener.outage.failures
                write_fails()
                wait_until(lambda: listener.outage.failures > failures, 30, "another failed attempt of the listener")

            monkeypatch.setattr(logs, "OUTAGE_REPEAT_SECONDS", 0.0)  # as if a minute had passed at each attempt
            another_failure_each()
            monkeypatch.setattr(logs, "OUTAGE_REPEAT_SECONDS", 60.0)
            logged = {who: outage_lines(who) for who in (pool, listening)}
            for who, lines in logged.items():
                assert len(lines) >= 2 and set(lines[1:]) == {
                    ("WARNING", f"PostgreSQL ({who}) still unreachable for N s")
                }
            another_failure_each()  # within the minute: nothing more
            assert {who: outage_lines(who) for who in (pool, listening)} == logged
        finally:
            own_cluster.resume()
        assert len(writer.write([Records(spans=spans)]).stored) == 2
        wait_until(lambda: listener.outage.failures == 0, 30, "the listener to connect again")
        listener.stop()
        writer.close()
    for who in (pool, listening):
        assert outage_lines(who)[len(logged[who]) :] == [("INFO", f"PostgreSQL ({who}) reachable again after N s")]
