"""The instrumentation libraries' own environments, built on first use and cached between runs.

The libraries pin different OpenTelemetry versions, so none of them is installed beside the daemon:
each family gets a virtual environment from its locked requirement list (``requirements/<name>.txt``,
compiled with ``uv pip compile``), and the Vercel AI SDK a ``node_modules`` from its
``package-lock.json`` (``npm ci``). They live outside the checkout, under ``CACHE_ROOT``, in a
folder named after a hash of what they were built from: an unchanged lock file costs nothing on
the next run, a changed one builds beside the old.

``uv`` (a test dependency of the daemon) creates and fills the virtual environments; a cold build of
every environment takes about half a minute on CI's machine, most of it downloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements"
DRIVERS = HERE / "drivers"
NODE_PROJECT = HERE / "vercel_ai"
CACHE_ROOT = Path(os.environ.get("GENAI_COLLECTOR_TEST_CACHE", Path.home() / ".cache" / "genai-collector-tests"))
PYTHON_ENVIRONMENTS = tuple(sorted(path.stem for path in REQUIREMENTS.glob("*.txt")))
BUILD_TIMEOUT = 600  # seconds


class BuildError(RuntimeError):
    """An environment could not be built; the message has the installer's output."""


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise BuildError("uv is missing: install the daemon's test extra (pip install -e '.[test]')")
    return found


def _run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=cwd, env=env)
    if result.returncode:
        raise BuildError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary sibling and rename it into place, so a half-built folder is never used."""
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    build(staging)
    (staging / ".complete").touch()
    try:
        staging.rename(target)
    except OSError:  # built by someone else meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


def python_environment(name: str) -> Path:
    """The Python interpreter of the virtual environment for ``requirements/<name>.txt``."""
    lock = REQUIREMENTS / f"{name}.txt"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = CACHE_ROOT / f"venv-{name}-py{version}-{_digest(lock.read_bytes(), version.encode())}"

    def build(staging: Path) -> None:
        uv = _uv()
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(staging)])
        _run(
            [uv, "pip", "install", "--quiet", "--python", str(staging / "bin" / "python"), "-r", str(lock)],
            env={**os.environ, "VIRTUAL_ENV": str(staging)},
        )

    return _build_once(target, build) / "bin" / "python"


def node_project() -> Path:
    """A folder with the Vercel AI SDK driver and its ``node_modules``, installed by ``npm ci``."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise BuildError("node and npm are missing: install Node.js 20 or later")
    manifest = (NODE_PROJECT / "package.json").read_bytes()
    lock = (NODE_PROJECT / "package-lock.json").read_bytes()
    target = CACHE_ROOT / f"node-vercel-ai-{_digest(manifest, lock)}"

    def build(staging: Path) -> None:
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NODE_PROJECT / name, staging / name)
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=staging)

    project = _build_once(target, build)
    for script in NODE_PROJECT.glob("*.mjs"):  # the driver may change without the lock changing
        shutil.copy(script, project / script.name)
    return project


def build_all() -> None:
    """Build every environment (``python -m tests.libraries.environments``, as ``.ci/run`` does)."""
    for name in PYTHON_ENVIRONMENTS:
        python_environment(name)
    node_project()


if __name__ == "__main__":
    build_all()
