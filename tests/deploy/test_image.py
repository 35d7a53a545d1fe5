"""The container image, built for real from the Dockerfile with buildah, run, and fed spans by the SDK.

Docker Hub is out of reach in CI, so the base image is Debian's own python3 and python3-venv, made with
debootstrap (cached under /var/tmp between runs) and passed as ``BASE_IMAGE``. buildah uses vfs storage
and chroot isolation: no container engine, no fuse, no runc; the container shares the host's network.

Needs root, buildah and debootstrap (``.ci/install-image-tools`` installs them). ``GENAI_COLLECTOR_IMAGE_TEST=0``
skips the test, ``=1`` requires it; unset, it runs when the tools are there and is required in CI.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import LISTENING, REPO, free_ports, wait_until

log = logging.getLogger(__name__)

FLAG = "GENAI_COLLECTOR_IMAGE_TEST"
TOOLS = ("buildah", "debootstrap", "tar")

DEBIAN_RELEASE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_CACHE = Path("/var/tmp/genai-collector-image-test")
BASE_MAX_AGE = 7 * 24 * 3600  # then debootstrap again, to pick up Debian's point releases
BASE_IMAGE = f"localhost/genai-collector-base:{DEBIAN_RELEASE}"
IMAGE = "localhost/genai-collector:test"
IMAGE_UID = 10001

# pip's settings on this host that the build needs to reach the same index the same way, by build argument.
PIP_BUILD_ARGS = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL", "cert": "PIP_CERT"}
BUILD_CA_BUNDLE = "/run/genai-collector-build/ca-certificates.crt"


def image_tools() -> None:
    """Skip on a developer's machine that lacks what the test needs; fail where the test is required."""
    setting = os.environ.get(FLAG, "")
    if setting == "0":
        pytest.skip(f"{FLAG}=0")
    required = setting == "1" or bool(os.environ.get("CI"))
    problems = [f"{tool} is not installed" for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        problems.append("it needs root (debootstrap, and buildah without a rootless setup)")
    if problems:
        reason = f"the image test cannot run: {'; '.join(problems)}"
        if required:
            pytest.fail(f"{reason}. Run .ci/install-image-tools as root, or set {FLAG}=0 to skip it")
        pytest.skip(f"{reason} (.ci/install-image-tools installs the tools; {FLAG}=1 requires the test)")


def run(command: list[str], what: str, timeout: float, **options: Any) -> str:
    """Run ``command``; on failure, fail the test with the end of its output."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, **options
        )
    except subprocess.TimeoutExpired as error:
        output = error.output.decode(errors="replace") if isinstance(error.output, bytes) else error.output or ""
        pytest.fail(f"{what} did not finish in {timeout:.0f}s:\n{output[-4000:]}")
    if done.returncode != 0:
        pytest.fail(f"{what} failed with exit code {done.returncode}:\n{done.stdout[-4000:]}")
    log.info("%s: %.1fs", what, time.monotonic() - started)
    return done.stdout


class Buildah:
    """The buildah command line on a private vfs store, so the test leaves nothing in the host's."""

    def __init__(self, root: Path) -> None:
        self.options = ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]

    def command(self, *arguments: str) -> list[str]:
        return ["buildah", *self.options, *arguments]

    def __call__(self, *arguments: str, what: str = "", timeout: float = 120) -> str:
        return run(self.command(*arguments), what or f"buildah {arguments[0]}", timeout)

    def inspect(self, image: str) -> dict[str, Any]:
        return json.loads(self("inspect", "--type", "image", image))


def debian_mirror(release: str) -> str:
    """The Debian mirror apt uses here for ``release`` (one-line or deb822 sources), else deb.debian.org."""
    sources = Path("/etc/apt")
    for path in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # without [arch=... signed-by=...]
            if len(words) >= 3 and words[0] == "deb" and words[2] == release:
                return words[1]
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            fields = {
                key.strip(): value.split()
                for key, _, value in (line.partition(":") for line in stanza.splitlines() if not line.startswith("#"))
            }
            if "deb" in fields.get("Types", []) and release in fields.get("Suites", []) and fields.get("URIs"):
                return fields["URIs"][0]
    return DEFAULT_MIRROR


def unmount_under(path: Path) -> None:
    """Lazily unmount whatever an interrupted debootstrap left mounted (proc, sys) inside ``path``."""
    mount_points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount_point in sorted(mount_points, reverse=True):
        if Path(mount_point).is_relative_to(path):
            subprocess.run(["umount", "--lazy", mount_point], check=False)


def base_rootfs() -> Path:
    """A tar of a minimal Debian with ``BASE_PACKAGES``, made by debootstrap and cached by release,
    packages and mirror for ``BASE_MAX_AGE``."""
    mirror = debian_mirror(DEBIAN_RELEASE)
    key = hashlib.sha256(" ".join((DEBIAN_RELEASE, mirror, *BASE_PACKAGES)).encode()).hexdigest()[:12]
    cached = BASE_CACHE / f"debian-{DEBIAN_RELEASE}-minbase-{key}.tar"
    if cached.exists() and time.time() - cached.stat().st_mtime < BASE_MAX_AGE:
        log.info("base root filesystem from the cache: %s", cached)
        return cached
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BASE_CACHE, prefix="debootstrap-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    DEBIAN_RELEASE,
                    str(rootfs),
                    mirror,
                ],
                f"debootstrap {DEBIAN_RELEASE} from {mirror}",
                timeout=900,
            )
        finally:
            unmount_under(rootfs)
        for leftover in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
            for path in rootfs.glob(leftover):
                path.unlink()
        partial = Path(scratch) / "rootfs.tar"
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], "tar of the base", timeout=300)
        partial.replace(cached)  # atomic: a concurrent run sees the whole file or none
    return cached


def import_base_image(buildah: Buildah, rootfs_tar: Path) -> None:
    container = buildah("from", "--quiet", "scratch").strip()
    buildah("add", container, str(rootfs_tar), "/", what="import of the base root filesystem", timeout=300)
    buildah(
        "config",
        "--env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--env",
        "LANG=C.UTF-8",
        "--cmd",
        "/bin/bash",
        container,
    )
    buildah("commit", "--quiet", "--rm", container, BASE_IMAGE, timeout=300)


def host_pip_settings() -> dict[str, str]:
    """pip's effective index and CA settings on this host (environment over config files)."""
    listed = run([sys.executable, "-m", "pip", "config", "list"], "pip config list", timeout=60)
    by_name: dict[str, dict[str, str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        by_name.setdefault(name, {})[section] = ast.literal_eval(value)
    settings: dict[str, str] = {}
    for name in PIP_BUILD_ARGS:
        for section in (":env:", "install", "global"):
            if section in by_name.get(name, {}):
                settings[name] = by_name[name][section]
                break
    return settings


def pip_build_options() -> list[str]:
    """Build arguments (and the CA bundle mounted for RUN steps) so pip in the build reaches the index the way
    pip here does. Local ``file://`` indexes stay out: the build is meant to fetch from the network index."""
    options: list[str] = []
    for name, value in host_pip_settings().items():
        if name == "cert":
            if Path(value).is_file():
                options += ["--volume", f"{value}:{BUILD_CA_BUNDLE}:ro", "--build-arg", f"PIP_CERT={BUILD_CA_BUNDLE}"]
            continue
        urls = [url for url in value.split() if url.startswith(("http://", "https://"))]
        if urls:
            options += ["--build-arg", f"{PIP_BUILD_ARGS[name]}={' '.join(urls)}"]
    return options


@pytest.fixture(scope="module")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    image_tools()
    root = tmp_path_factory.mktemp("buildah")
    buildah = Buildah(root)
    yield buildah
    subprocess.run(buildah.command("rm", "--all"), capture_output=True, check=False, timeout=120)
    subprocess.run(buildah.command("rmi", "--all", "--force"), capture_output=True, check=False, timeout=120)
    unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)  # vfs keeps a full copy per layer: gigabytes


@pytest.fixture(scope="module")
def image(buildah: Buildah, dashboard_build: Path) -> dict[str, Any]:
    """The image built from the repository's Dockerfile on the debootstrap base; its inspect record.

    The Dockerfile's Node stage needs a Node image from a registry this build cannot reach: the image takes the
    dashboard that ``make dashboard`` built here instead (``DASHBOARD=prebuilt``)."""
    import_base_image(buildah, base_rootfs())
    buildah(
        "build",
        "--isolation",
        "chroot",
        "--format",
        "docker",
        "--pull=never",
        "--layers=false",
        "--file",
        str(REPO / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg",
        "DASHBOARD=prebuilt",
        *pip_build_options(),
        "--tag",
        IMAGE,
        str(REPO),
        what="image build",
        timeout=900,
    )
    return buildah.inspect(IMAGE)


def test_image_config(image: dict[str, Any]) -> None:
    config = image["Docker"]["config"]
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert config["Entrypoint"] == ["genai-collector"] and config["Cmd"] == ["serve"]
    assert set(config["ExposedPorts"]) == {"4317/tcp", "4318/tcp", "8888/tcp"}
    assert set(config["Volumes"]) == {"/data"}
    environment = dict(variable.split("=", 1) for variable in config["Env"])
    assert environment["PATH"].startswith("/opt/venv/bin:")
    expected = {
        "GENAI_COLLECTOR_DB": "/data/genai-collector.db",
        "GENAI_COLLECTOR_GRPC_ENDPOINT": "0.0.0.0:4317",
        "GENAI_COLLECTOR_HTTP_ENDPOINT": "0.0.0.0:4318",
        "GENAI_COLLECTOR_ADMIN_ENDPOINT": "0.0.0.0:8888",
        "PYTHONUNBUFFERED": "1",
    }
    assert {key: environment.get(key) for key in expected} == expected
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python3"]


def innermost_process(pid: int) -> int:
    """The end of the chain of single children under ``pid`` (buildah, its chroot runtime and exec helper, then
    the container's process): chroot isolation shares the host's process table."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    while len(children.get(pid, [])) == 1:
        pid = children[pid][0]
    return pid


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for process {pid}")


class Container:
    """A working container of the image, its ``/data`` a host directory, run with the host's network."""

    def __init__(self, buildah: Buildah, image: dict[str, Any], data: Path, ports: dict[str, int]) -> None:
        self.buildah = buildah
        self.image = image
        self.data = data
        self.name = buildah("from", "--quiet", "--pull=never", IMAGE).strip()
        # buildah run would put its own anonymous volume over a bind mount of the image's VOLUME path
        buildah("config", "--volume", "/data-", self.name)
        # the image's 0.0.0.0 endpoints on free ports: the container shares the host's ports
        self.environment = {
            "GENAI_COLLECTOR_GRPC_ENDPOINT": f"0.0.0.0:{ports['grpc']}",
            "GENAI_COLLECTOR_HTTP_ENDPOINT": f"0.0.0.0:{ports['http']}",
            "GENAI_COLLECTOR_ADMIN_ENDPOINT": f"0.0.0.0:{ports['admin']}",
            "GENAI_COLLECTOR_QUERY__ENDPOINT": f"127.0.0.1:{ports['query']}",
        }

    def run_command(self, command: list[str]) -> list[str]:
        environment = [option for key, value in self.environment.items() for option in ("--env", f"{key}={value}")]
        return self.buildah.command(
            "run",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "--volume",
            f"{self.data}:/data",
            *environment,
            self.name,
            "--",
            *command,
        )

    def health_check(self) -> int:
        """The image's HEALTHCHECK command, run inside the container; its exit code."""
        test = self.image["Docker"]["config"]["Healthcheck"]["Test"]
        return subprocess.run(self.run_command(test[1:]), capture_output=True, timeout=60, check=False).returncode

    @contextmanager
    def serving(self, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
        """The image's entry point and command, running until the block ends."""
        config = self.image["Docker"]["config"]
        with log_path.open("wb") as output:
            process = subprocess.Popen(
                self.run_command(config["Entrypoint"] + config["Cmd"]),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def send_spans(ports: dict[str, int]) -> list[ReadableSpan]:
    """One span over OTLP/HTTP and one over OTLP/gRPC, with the SDK's exporters; each must be acknowledged."""
    provider = TracerProvider(resource=Resource.create({"service.name": "image-test"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.deploy")
    with tracer.start_as_current_span("chat gpt-4o") as llm:
        llm.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 812,
                "gen_ai.usage.output_tokens": 64,
            }
        )
    with tracer.start_as_current_span("execute_tool lookup_order") as tool:
        tool.set_attribute("gen_ai.tool.name", "lookup_order")
    provider.shutdown()
    llm_span, tool_span = memory.get_finished_spans()
    http = HttpSpanExporter(endpoint=f"http://127.0.0.1:{ports['http']}/v1/traces", timeout=10)
    grpc = GrpcSpanExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True, timeout=10)
    try:
        assert http.export([llm_span]) is SpanExportResult.SUCCESS
        assert grpc.export([tool_span]) is SpanExportResult.SUCCESS
    finally:
        http.shutdown()
        grpc.shutdown()
    return [llm_span, tool_span]


def check_dashboard(url: str) -> None:
    """The image carries the built dashboard: index.html at / and the hashed script it loads."""
    index = urllib.request.urlopen(f"{url}/traces", timeout=10).read().decode()
    assert '<div id="root">' in index and '<base href="./">' in index
    script = re.search(r'src="\./(assets/index-[\w-]+\.js)"', index)
    assert script, index
    with urllib.request.urlopen(f"{url}/{script.group(1)}", timeout=10) as asset:
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert len(asset.read()) > 10_000


def test_container_stores_spans_sent_to_it(buildah: Buildah, image: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, IMAGE_UID, IMAGE_UID)  # what a volume for the image's user needs
    ports = dict(zip(("grpc", "http", "admin", "query"), free_ports(4, host="0.0.0.0"), strict=True))
    container = Container(buildah, image, data, ports)
    log_path = tmp_path / "container.log"
    with container.serving(log_path) as process:
        started = time.monotonic()
        listening = wait_until(
            lambda: process.poll() is not None or LISTENING.search(log_path.read_text(errors="replace")),
            timeout=120,
            what="the container's collector to listen",
            interval=0.2,
        )
        assert process.poll() is None, f"the container exited:\n{log_path.read_text(errors='replace')}"
        log.info("container listening after %.1fs", time.monotonic() - started)
        assert listening["http_host"] == "0.0.0.0" and int(listening["http"]) == ports["http"]
        collector_pid = innermost_process(process.pid)
        assert b"genai-collector\0serve" in Path(f"/proc/{collector_pid}/cmdline").read_bytes()
        assert process_uid(collector_pid) == IMAGE_UID

        sent = send_spans(ports)
        assert container.health_check() == 0
        check_dashboard(f"http://127.0.0.1:{ports['query']}")

        os.kill(collector_pid, signal.SIGTERM)  # buildah kills rather than forwards: signal the collector itself
        assert process.wait(timeout=60) == 0, log_path.read_text(errors="replace")
    container_log = log_path.read_text(errors="replace")
    assert "signal received: draining" in container_log and "genai-collector stopped" in container_log
    assert container.health_check() == 1  # the check notices a collector that is gone (a traceback, not 127)

    database = data / "genai-collector.db"
    assert database.stat().st_uid == IMAGE_UID
    connection = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = set(
            connection.execute("SELECT span_id, name, service_name, request_model, tool_name, input_tokens FROM spans")
        )
    finally:
        connection.close()
    assert rows == {
        (f"{sent[0].context.span_id:016x}", "chat gpt-4o", "image-test", "gpt-4o", None, 812),
        (f"{sent[1].context.span_id:016x}", "execute_tool lookup_order", "image-test", None, "lookup_order", None),
    }
