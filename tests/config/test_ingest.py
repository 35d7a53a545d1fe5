"""``ingest.workers``: ``auto`` (the default) counts the CPUs this process may use, not the host's."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import Settings
from collector.config.ingest import (
    AUTO_MAX_WORKERS,
    Cpus,
    auto_workers,
    cgroup_cpu_quota,
    describe,
    own_cgroup,
    worker_processes,
)


def cgroup_tree(root: Path, limits: dict[str, str]) -> Path:
    """A fake cgroup v2 mount: ``limits`` maps a cgroup's path ('' for the root) to the text of its cpu.max."""
    for path, cpu_max in limits.items():
        directory = root / path
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cpu.max").write_text(cpu_max + "\n", encoding="ascii")
    return root


def test_the_default_is_auto() -> None:
    assert Settings().ingest.workers == "auto"
    assert Settings.model_validate({"ingest": {"workers": " AUTO "}}).ingest.workers == "auto"


@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [
        ("max 100000", None),  # no quota
        ("200000 100000", 2),
        ("150000 100000", 2),  # 1.5 CPUs: rounded up
        ("50000 100000", 1),
        ("400000 50000", 8),  # the period need not be the default 100 ms
    ],
)
def test_a_containers_cgroup_quota_in_cpus_rounded_up(tmp_path: Path, cpu_max: str, cpus: int | None) -> None:
    """In a container the cgroup namespace's root is the container's own cgroup: /proc/self/cgroup says ``0::/``."""
    assert cgroup_cpu_quota(cgroup_tree(tmp_path, {"": cpu_max}), "/") == cpus


def test_the_tightest_quota_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root = cgroup_tree(
        tmp_path,
        {
            "system.slice": "300000 100000",
            "system.slice/genai-collector.service": "max 100000",
            "user.slice": "max 100000",
        },
    )  # the root cgroup has no cpu.max; a slice limits every service in it
    assert cgroup_cpu_quota(root, "/system.slice/genai-collector.service") == 3
    assert cgroup_cpu_quota(root, "/user.slice") is None
    assert cgroup_cpu_quota(tmp_path / "no-cgroup-v2-here", "/") is None  # cgroup v1, or none mounted
    assert cgroup_cpu_quota(cgroup_tree(tmp_path / "garbled", {"": "lots 0"}), "/") is None


def test_own_cgroup_is_the_cgroup_v2_line_of_proc_self_cgroup() -> None:
    assert own_cgroup("0::/system.slice/genai-collector.service\n") == "/system.slice/genai-collector.service"
    assert own_cgroup("12:cpu,cpuacct:/docker/abc\n0::/\n") == "/"
    assert own_cgroup("4:memory:/x\n1:cpu:/\n") == "/"  # cgroup v1 only: no quota to read there


@pytest.mark.parametrize(
    ("cpus", "workers"),
    [
        (Cpus(affinity=64, quota=2), 2),  # a container limited to 2 CPUs on a 64-core host
        (Cpus(affinity=2, quota=None), 2),
        (Cpus(affinity=3, quota=8), min(3, AUTO_MAX_WORKERS)),  # taskset to 3 CPUs inside a larger quota
        (Cpus(affinity=64, quota=None), AUTO_MAX_WORKERS),  # the one writer would not keep up with more
        (Cpus(affinity=1, quota=None), 1),
        (Cpus(affinity=8, quota=1), 1),
    ],
)
def test_auto_is_a_worker_per_usable_cpu_up_to_the_cap(cpus: Cpus, workers: int) -> None:
    assert auto_workers(cpus) == workers


def test_on_one_cpu_auto_receives_in_the_main_process(tmp_path: Path) -> None:
    """One CPU: no worker processes, whose hand-off would cost CPU for nothing."""
    one_cpu = Cpus(affinity=4, quota=cgroup_cpu_quota(cgroup_tree(tmp_path, {"": "100000 100000"}), "/"))
    assert worker_processes("auto", one_cpu) == 0
    assert describe("auto", one_cpu) == (
        "in the main process (ingest.workers auto: 1 CPU usable, from affinity 4 and cgroup CPU quota 1)"
    )


def test_the_start_up_log_says_how_many_workers_and_why() -> None:
    assert describe("auto", Cpus(affinity=2)) == (
        "2 worker processes (ingest.workers auto: 2 CPUs usable, from affinity 2 and no cgroup CPU quota)"
    )
    assert describe("auto", Cpus(affinity=64, quota=16)) == (
        f"{AUTO_MAX_WORKERS} worker processes (ingest.workers auto: 16 CPUs usable, from affinity 64 and cgroup "
        f"CPU quota 16; at most {AUTO_MAX_WORKERS})"
    )
    assert describe(1, Cpus(affinity=64)) == "in the main process (ingest.workers: 1)"
    assert describe(6, Cpus(affinity=2)) == "6 worker processes (ingest.workers: 6)"


def test_an_explicit_count_is_kept_and_0_or_1_is_the_main_process() -> None:
    for workers, processes in ((0, 0), (1, 0), (2, 2), ("3", 3), (16, 16)):  # no cap on an explicit count
        ingest = Settings.model_validate({"ingest": {"workers": workers}}).ingest
        assert ingest.processes == processes


@pytest.mark.parametrize("workers", [-1, "many", True, 2.5])
def test_a_bad_count_is_refused_with_one_message(workers: object) -> None:
    with pytest.raises(ValueError, match="is neither auto nor a number of processes") as refused:
        Settings.model_validate({"ingest": {"workers": workers}})
    assert refused.value.error_count() == 1  # type: ignore[attr-defined]
