"""The table of wrong keys by address that every process of the collector counts into (``auth.failures``)."""

from __future__ import annotations

import subprocess
import sys

from collector.auth.failures import SLOTS, FailureTable

WINDOW = 60.0


def test_wrong_keys_counted_by_another_process_are_seen_here() -> None:
    table = FailureTable.create()
    table.failed("10.0.0.1", 100.0, WINDOW)
    child = (
        "import sys; from collector.auth.failures import FailureTable\n"
        "table = FailureTable(int(sys.argv[1]))\n"
        "for _ in range(2): table.failed('10.0.0.1', 101.0, 60.0)\n"
        "table.failed('10.0.0.2', 102.0, 60.0)\n"
        "print(table.window('10.0.0.1'))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", child, str(table.fd)], pass_fds=(table.fd,), capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "(100.0, 3)"  # the child saw the parent's first wrong key
    assert table.window("10.0.0.1") == (100.0, 3)
    assert table.window("10.0.0.2") == (102.0, 1)
    assert table.window("10.0.0.3") is None
    table.close()


def test_a_window_starts_anew_once_it_is_over() -> None:
    table = FailureTable.create()
    for now in (0.0, 30.0, 59.9):
        table.failed("::1", now, WINDOW)
    assert table.window("::1") == (0.0, 3)
    table.failed("::1", 60.0, WINDOW)
    assert table.window("::1") == (60.0, 1)


def test_more_addresses_than_slots_take_over_old_windows_and_the_newest_are_counted() -> None:
    table = FailureTable.create()
    addresses = [f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}" for n in range(SLOTS + 5_000)]
    for at, address in enumerate(addresses):
        table.failed(address, float(at) / 1e6, WINDOW)  # all within one window: none expired
    assert all(table.window(address) is not None for address in addresses[-1_000:])
    forgotten = sum(table.window(address) is None for address in addresses)
    assert 5_000 <= forgotten < 10_000  # bounded: each newcomer took over one window, the oldest it probed
    table.failed(addresses[0], 120.0, WINDOW)  # once the windows are over, a forgotten address is counted anew
    assert table.window(addresses[0]) == (120.0, 1)
