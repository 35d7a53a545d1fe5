"""Wrong keys per address, counted in one table every process of the collector shares.

The table lives in shared memory (a memfd), so that the limit on wrong keys is exact whichever process a
connection reaches: the main process creates it, and each ingest worker maps the same memory (its descriptor is
handed down as the queue's door is, ``collector.workers``). A single process uses one of its own.

Each slot holds an address's digest, the start of its one-minute window (``time.monotonic``, one clock for every
process of the machine) and the wrong keys in it; an address's slot is found by open addressing, within
``PROBES`` slots of its digest's. Changes and reads take a POSIX record lock on the memory (processes) and a
thread lock (threads of one process): wrong keys are rare, and a lock costs two system calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Iterator

SLOTS = 65_536  # addresses tracked at once; past it an expired window or the oldest one is taken over
PROBES = 32  # slots looked at for one address
_SLOT = struct.Struct("<Qdq")  # address digest (0: free), window start (monotonic seconds), wrong keys
SIZE = SLOTS * _SLOT.size  # 1.5 MiB of address space; memory only for the pages written


def digest(address: str) -> int:
    """A 64-bit digest of ``address``, the same in every process, never 0 (a free slot)."""
    return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8).digest(), "little") | 1


class FailureTable:
    """The windows of wrong keys by address, shared by the processes that map ``fd``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._memory = mmap.mmap(fd, SIZE)
        self._lock = threading.Lock()
        self._closed = weakref.finalize(self, os.close, fd)  # the mapping closes itself once collected

    @classmethod
    def create(cls) -> FailureTable:
        fd = os.memfd_create("genai-collector-auth-failures")  # close-on-exec: only pass_fds hands it down
        os.ftruncate(fd, SIZE)
        return cls(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The thread lock, then the record lock (which the kernel releases if the process dies holding it)."""
        with self._lock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _offsets(self, key: int) -> Iterator[int]:
        first = key % SLOTS
        for probe in range(PROBES):
            yield (first + probe) % SLOTS * _SLOT.size

    def window(self, address: str) -> tuple[float, int] | None:
        """(window start, wrong keys in it) of ``address``, or None when it has none."""
        key = digest(address)
        with self._locked():
            for offset in self._offsets(key):
                found, started, failures = _SLOT.unpack_from(self._memory, offset)
                if found == key:
                    return started, failures
                if not found:
                    return None
        return None

    def failed(self, address: str, now: float, window: float) -> None:
        """One more wrong key from ``address`` at ``now``; a window older than ``window`` seconds starts anew."""
        key = digest(address)
        with self._locked():
            reusable: int | None = None  # the first slot free, or holding an expired window
            oldest: tuple[float, int] | None = None  # (window start, slot) of the oldest window, to take over
            for offset in self._offsets(key):
                found, started, failures = _SLOT.unpack_from(self._memory, offset)
                if found == key:
                    if now - started >= window:
                        started, failures = now, 0
                    _SLOT.pack_into(self._memory, offset, key, started, failures + 1)
                    return
                if reusable is None and (not found or now - started >= window):
                    reusable = offset
                if not found:
                    break
                if oldest is None or started < oldest[0]:
                    oldest = (started, offset)
            target = reusable if reusable is not None else oldest[1] if oldest is not None else 0
            _SLOT.pack_into(self._memory, target, key, now, 1)

    def close(self) -> None:
        self._memory.close()
        self._closed()
