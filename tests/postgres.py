"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a unix socket, no durability.

``initdb`` refuses to run as root, so as root (here and in CI) the cluster belongs to the ``postgres`` OS user
and its directory is handed to it. Tests reach it over its unix socket as the database superuser ``postgres``
(``trust`` authentication: nothing listens on TCP). One cluster per test session, one database per test module.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.helpers import free_ports, missing

# Speed over durability: a test cluster is thrown away, never recovered.
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "listen_addresses": "''",
    "max_connections": "100",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "deadlock_timeout": "100ms",
}


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    found = [path for path in found if (path / "initdb").is_file()]
    return found[-1] if found else None


class Cluster:
    """One running server in a temporary directory; ``dsn(database)`` is how a client reaches a database.
    ``settings`` are the server's (the tests' speed over durability by default; the benchmarks' are durable)."""

    def __init__(self, binaries: Path, settings: dict[str, str] | None = None) -> None:
        self.binaries = binaries
        self.settings = SETTINGS if settings is None else settings
        self.root = Path(tempfile.mkdtemp(prefix="genai-collector-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.port = free_ports(1)[0]
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *command: str) -> None:
        """Run a server binary, as the cluster's owner. Through ``runuser`` rather than ``subprocess``'s ``user=``:
        to change users Python forks instead of vforking, and a fork of a test process whose gRPC threads are busy
        can die before it execs (SIGSEGV, seen stopping the server under load)."""
        as_owner = ("runuser", "-u", self._owner.pw_name, "--") if self._owner else ()
        result = subprocess.run(
            (*as_owner, *command),
            check=False,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> Cluster:
        self.socket_dir.mkdir()
        if self._owner:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            str(self.binaries / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            "--no-sync",
        )
        self._start_server()
        return self

    def resume(self) -> None:
        """Start the server again after ``stop`` (every connection was cut): the same data, socket and port."""
        self._start_server()

    def _start_server(self) -> None:
        options = " ".join(f"-c {name}={value}" for name, value in self.settings.items())
        self._run(
            str(self.binaries / "pg_ctl"),
            "start",
            "--pgdata",
            str(self.data),
            "--wait",
            "--log",
            str(self.root / "server.log"),
            "-o",
            f"{options} -c port={self.port} -c unix_socket_directories={self.socket_dir}",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.binaries / "pg_ctl"), "stop", "--pgdata", str(self.data), "--mode", mode, "--wait")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # not started, or stopped already
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={database}"

    def url(self, database: str = "postgres") -> str:
        """The database as ``--db`` takes it: a libpq URL with the socket directory as its host."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    @contextlib.contextmanager
    def database(self, prefix: str = "test", *, url: bool = False) -> Iterator[str]:
        """A new empty database (from ``template0``), as a DSN (or with ``url`` as ``--db`` takes it); dropped
        afterwards, whoever is still connected."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}".lower()
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            yield self.url(name) if url else self.dsn(name)
        finally:
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_cluster() -> Iterator[Cluster]:
    """The session's cluster; skipped (failed in CI) where Debian's ``postgresql`` package is not installed."""
    binaries = server_binaries()
    if binaries is None:
        missing("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin; Debian's postgresql)")
        return
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing("running as root needs the postgres OS user to own the test cluster (Debian's postgresql)")
            return
    cluster = Cluster(binaries)
    try:
        yield cluster.start()
    finally:
        cluster.remove()
