"""Shared fixtures: a real collector on port 0, run on its own event loop in a background thread."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import yaml

from collector.config import Settings
from collector.service import Service
from tests import helpers
from tests.helpers import REPO, free_ports, require_tool
from tests.postgres import Cluster, start_cluster

LOOPBACK_PORT_0 = "127.0.0.1:0"


class RunningCollector:
    """A started ``Service`` and the addresses a client needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.collector = Service(settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="collector-loop", daemon=True)
        self.stopped: bool | None = None

    def start(self) -> RunningCollector:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.collector.start(), self.loop).result(timeout=30)
        except BaseException:
            self._close_loop()  # a collector that did not start is never stopped: its loop ends here
            raise
        return self

    def stop(self) -> bool:
        if self.stopped is None:
            self.stopped = asyncio.run_coroutine_threadsafe(self.collector.stop(), self.loop).result(timeout=60)
            self._close_loop()
        return self.stopped

    def _close_loop(self) -> None:
        """Shut down the loop's default executor (``asyncio.to_thread``), stop the loop and close it, so that
        neither its thread nor an ``asyncio_N`` thread outlives the test."""
        asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.collector.ports['otlp_grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['otlp_http']}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['admin']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.ports['query']}"

    def query(self, sql: str, *bindings: Any) -> list[tuple[Any, ...]]:
        """Read the database the way a user would: a separate connection."""
        connection = apsw.Connection(str(self.settings.db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return list(connection.execute(sql, bindings))
        finally:
            connection.close()


def collector_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db": tmp_path / "collector.db",
        "grpc_endpoint": LOOPBACK_PORT_0,
        "http_endpoint": LOOPBACK_PORT_0,
        "admin_endpoint": LOOPBACK_PORT_0,
        "query": {"endpoint": LOOPBACK_PORT_0},
        "batch_max_age": "5ms",
        "shutdown_timeout": "10s",
        "ingest": {"workers": helpers.INGEST_WORKERS},
    }
    values["query"] = {**values["query"], **overrides.pop("query", {})}
    values.update(overrides)
    return Settings.model_validate(values)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ingest-workers",
        default="1",
        help="run every collector of the suite with this many ingest worker processes (1: in the main process; "
        "auto: the daemon's default, one per CPU)",
    )


def pytest_configure(config: pytest.Config) -> None:
    helpers.INGEST_WORKERS = config.getoption("--ingest-workers")


@pytest.fixture(params=[1, 2], ids=["one-process", "ingest-workers"])
def ingest_workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the test twice: receiving in the main process, and with two ingest worker processes."""
    monkeypatch.setattr(helpers, "INGEST_WORKERS", request.param)
    workers: int = request.param
    return workers


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Any]:
    """Call with setting overrides; every collector started is stopped at the end of the test."""
    started: list[RunningCollector] = []

    def start(**overrides: Any) -> RunningCollector:
        running = RunningCollector(collector_settings(tmp_path, **overrides)).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills up."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def collector(start_collector: Any) -> RunningCollector:
    return start_collector()


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Start a real Prometheus server (Debian's package) with the given configuration; returns its URL.
    Exemplar storage is on, so tests can read back the exemplars it scraped."""
    binary = require_tool("prometheus")
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any]) -> str:
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_ports(1)[0]
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--enable-feature=exemplar-storage",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def dashboard_build() -> Path:
    """The built dashboard, made with the Makefile's rule (npm ci + npm run build when missing or stale)."""
    require_tool("npm")
    result = subprocess.run(
        ["make", "--no-print-directory", "dashboard"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"building the dashboard failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    bundle = REPO / "collector" / "query" / "ui"
    assert (bundle / "index.html").is_file()
    return bundle


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server for the session (``tests/postgres.py``); started by the first test using it."""
    yield from start_cluster()
