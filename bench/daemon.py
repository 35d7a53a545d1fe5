"""The collector process a benchmark runs against: started with its flags, its ports read from its log, its
CPU and memory read from /proc; and a TLS + API key configuration for ``--secure``."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import apsw

from bench import ROOT

LISTENING = re.compile(
    r"genai-collector listening: otlp-grpc \S+:(?P<grpc>\d+), otlp-http \S+:(?P<http>\d+), admin \S+:(?P<admin>\d+)"
)
# The start-up line that says how many ingest worker processes the collector runs (none: the main process).
INGEST = re.compile(r"ingest: (?:(?P<workers>\d+) worker processes|in the main process)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the daemon and its /proc figures --------------------------------------------------------


def collector_pids(pid: int) -> list[int]:
    """The collector's process and its children (the ingest workers, with ``--ingest-workers``)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids.extend(int(child) for child in (task / "children").read_text().split())
    return pids


def proc_cpu_seconds(pid: int, children: bool = True) -> float:
    """CPU seconds (user + system) of the collector's processes together: ``pid`` and its children (without
    ``children``: the main process alone, whose writer is the limit with ``--ingest-workers``)."""
    total = 0.0
    for process in collector_pids(pid) if children else [pid]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)
    return total


def proc_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, summed over the collector's processes (``pid`` and its children): the
    sum of the peaks bounds the peak of all of them together from above."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for process in collector_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] += int(rest.split()[0])
    return values


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class RssSampler(threading.Thread):
    """Samples a process's RSS every 200 ms so memory growth during a run shows."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.samples.append((time.monotonic(), proc_memory_kib(self.pid)["VmRSS"]))
            self._done.wait(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join()


def collector_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("GENAI_COLLECTOR_")}


class Daemon:
    """``python -m collector serve`` on port 0 with a database of ours; stderr kept for the report."""

    def __init__(self, db: Path | str, arguments: Sequence[str]) -> None:
        self.db = db
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "collector",
                "serve",
                "--db",
                str(db),
                "--grpc-endpoint",
                "127.0.0.1:0",
                "--http-endpoint",
                "127.0.0.1:0",
                "--admin-endpoint",
                "127.0.0.1:0",
                "--query-endpoint",
                "127.0.0.1:0",
                *arguments,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=collector_environment(),
        )
        self._listening = threading.Event()
        self._ingest = threading.Event()
        self.ports: dict[str, int] = {}
        self.ingest_workers: int | None = None  # worker processes, 0 for the main process, from its start-up log
        self._reader = threading.Thread(target=self._read, name="daemon-stderr", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if not self.ports and (match := LISTENING.search(line)):
                self.ports = {name: int(match.group(name)) for name in ("grpc", "http", "admin")}
                self._listening.set()
            if self.ingest_workers is None and (match := INGEST.search(line)):
                self.ingest_workers = int(match.group("workers") or 0)
                self._ingest.set()
        self._listening.set()
        self._ingest.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        if not self._listening.wait(timeout) or not self.ports:
            self.kill()
            raise SystemExit("bench: the collector did not start:\n" + "\n".join(self.lines[-20:]))
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if _status(f"http://127.0.0.1:{self.ports['admin']}/readyz") == 200:
                    self._ingest.wait(max(0.0, deadline - time.monotonic()))  # logged right after the ports
                    return
            time.sleep(0.05)
        self.kill()
        raise SystemExit("bench: the collector never became ready:\n" + "\n".join(self.lines[-20:]))

    def targets(self, protocol: str, scheme: str = "http") -> str:
        if protocol == "grpc":
            return f"127.0.0.1:{self.ports['grpc']}"
        return f"{scheme}://127.0.0.1:{self.ports['http']}/v1/traces"

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait for the drain; the exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self._reader.join(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def problems(self) -> list[str]:
        """Log lines at WARNING or above (text or JSON format)."""
        return [
            line
            for line in self.lines
            if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|\"level\": ?\"(warning|error)", line, re.I)
        ]


def _status(url: str) -> int:
    parsed = urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=2)
    try:
        connection.request("GET", parsed.path)
        return connection.getresponse().status
    finally:
        connection.close()


def count_spans(db: Path) -> int:
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return connection.execute("SELECT count(*) FROM spans").fetchone()[0]
    finally:
        connection.close()


def secure_collector_config(directory: Path) -> tuple[str, str, Path]:
    """A CA, a server certificate for 127.0.0.1 and an ingest key made for this run, and a collector config
    serving both OTLP listeners with them (admin stays plaintext for the readiness check)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("bench CA"))
        .issuer_name(name("bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    api_key = base64.urlsafe_b64encode(os.urandom(24)).decode()
    config = {
        "tls": {
            "cert_file": str(directory / "server.crt"),
            "key_file": str(directory / "server.key"),
            "admin": {"enabled": False},
        },
        "auth": {"api_keys": [{"name": "bench", "key": api_key, "scopes": ["ingest"]}]},
    }
    (directory / "collector.yaml").write_text(json.dumps(config))  # JSON is YAML
    return str(directory / "ca.crt"), api_key, directory / "collector.yaml"
