"""What a PostgreSQL failure means for the request: retry later, or refuse its data; from a real server."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from collector.config import Settings
from collector.model import Records
from collector.otlp.protobuf import decode_spans
from collector.storage import StorageUnavailable, StoreUnopenable
from collector.storage.postgres.connection import connect
from collector.storage.postgres.engine import open_store
from collector.storage.postgres.errors import is_conflict, is_data_error, is_retryable
from collector.storage.postgres.writer import PostgresSpanWriter
from tests.helpers import otlp_request
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
