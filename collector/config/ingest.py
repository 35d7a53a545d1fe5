"""``ingest``: how many processes receive, decode and transform OTLP requests.

``auto`` (the default) counts the CPUs this process may use, not the host's: its affinity mask, lowered by a
cgroup v2 CPU quota (a container limited to 2 CPUs on a 64-core host starts 2 workers), and starts one worker
per CPU up to ``AUTO_MAX_WORKERS``; on one CPU the main process receives itself.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from collector.config.base import Section

CGROUP_ROOT = Path("/sys/fs/cgroup")
# One writer commits every span: 2 workers feed it more than it commits, and each further worker adds ~80 MB, which
# takes a collector at twice its maximum load past 500 MB with 3 or 4 (docs/performance.md, "Why `ingest.workers`
# defaults to auto, at most 2"). Raise it when the writer commits faster.
AUTO_MAX_WORKERS = 2


def cgroup_cpu_quota(root: Path, cgroup: str) -> int | None:
    """The CPUs a cgroup v2 quota allows the cgroup ``cgroup`` (its path under ``root``, as ``/proc/self/cgroup``
    names it), rounded up: the tightest ``cpu.max`` of the cgroup and its ancestors; None without a quota
    (``max``) or without cgroup v2 files. In a container ``cgroup`` is ``/`` and ``root`` holds its own limit."""
    quotas = []
    directory = root.joinpath(*Path(cgroup).parts[1:]) if cgroup.startswith("/") else root / cgroup
    while True:
        try:
            quota, period = (directory / "cpu.max").read_text(encoding="ascii").split()
            if quota != "max":
                quotas.append(math.ceil(int(quota) / int(period)))
        except (OSError, ValueError, ZeroDivisionError):
            pass  # no such file at this level, or nothing readable in it: no limit from it
        if directory == root or directory.parent == directory:
            break
        directory = directory.parent
    return min(quotas, default=None)


def own_cgroup(proc_self_cgroup: str) -> str:
    """This process's cgroup v2 path from the text of ``/proc/self/cgroup`` (its ``0::`` line), ``/`` if none."""
    for line in proc_self_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return "/"


@dataclass(frozen=True)
class Cpus:
    """The CPUs this process may use: its affinity mask, and the cgroup v2 quota when that is tighter."""

    affinity: int
    quota: int | None = None

    @property
    def usable(self) -> int:
        return max(1, min(self.affinity, self.quota) if self.quota is not None else self.affinity)

    @classmethod
    def of_this_process(cls, cgroup_root: Path = CGROUP_ROOT) -> Cpus:
        try:
            cgroup = own_cgroup(Path("/proc/self/cgroup").read_text(encoding="utf-8"))
        except OSError:
            cgroup = "/"
        return cls(affinity=len(os.sched_getaffinity(0)), quota=cgroup_cpu_quota(cgroup_root, cgroup))

    def __str__(self) -> str:
        quota = "no cgroup CPU quota" if self.quota is None else f"cgroup CPU quota {self.quota}"
        return f"{self.usable} CPU{'s' if self.usable > 1 else ''} usable, from affinity {self.affinity} and {quota}"


def auto_workers(cpus: Cpus) -> int:
    """``auto``: one worker per usable CPU up to ``AUTO_MAX_WORKERS``; 1 (the main process) on one CPU."""
    return min(cpus.usable, AUTO_MAX_WORKERS)


def worker_processes(workers: int | Literal["auto"], cpus: Cpus) -> int:
    """The worker processes ``workers`` starts on ``cpus``: none when the main process receives (0 or 1)."""
    count = auto_workers(cpus) if workers == "auto" else workers
    return count if count > 1 else 0


def describe(workers: int | Literal["auto"], cpus: Cpus) -> str:
    """The start-up log's account of the ingest processes and, for ``auto``, why that many."""
    processes = worker_processes(workers, cpus)
    started = f"{processes} worker processes" if processes else "in the main process"
    if workers != "auto":
        return f"{started} (ingest.workers: {workers})"
    capped = f"; at most {AUTO_MAX_WORKERS}" if cpus.usable > AUTO_MAX_WORKERS else ""
    return f"{started} (ingest.workers auto: {cpus}{capped})"


class IngestSettings(Section):
    workers: int | Literal["auto"] = Field(
        "auto",
        description="Processes that receive, decode and transform OTLP requests on the shared ports and hand "
        f"them to the one writer: 'auto' starts one per CPU this process may use (affinity and cgroup quota), at "
        f"most {AUTO_MAX_WORKERS}, and none on one CPU; 0 or 1 receives in the main process.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_or_a_count(cls, value: Any) -> int | Literal["auto"]:
        """One message for a bad value, rather than one per member of the union."""
        if isinstance(value, str):
            if value.strip().lower() == "auto":
                return "auto"
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{value!r} is neither auto nor a number of processes") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{value!r} is neither auto nor a number of processes (0 or more)")
        return value

    @cached_property
    def cpus(self) -> Cpus:
        """The CPUs counted for ``auto``, read once."""
        return Cpus.of_this_process()

    @property
    def processes(self) -> int:
        """Worker processes to start: none when the main process receives."""
        return worker_processes(self.workers, self.cpus)

    def describe(self) -> str:
        return describe(self.workers, self.cpus)
