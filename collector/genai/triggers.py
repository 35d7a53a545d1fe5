"""One native pass over a string: does it hold any of a set of trigger patterns? (Hyperscan.)

Redaction asks this of every string it could scan (``redact._TRIGGERS``); most hold none and are returned
untouched without a Python-level look at their characters. Hyperscan runs every pattern at once over the
text's UTF-8 bytes in one linear pass, with the GIL released, and stops at the first match. The patterns are
compiled once, when the module that names them is imported (~0.1 s).

The wheels of ``hyperscan`` exist for x86-64 (Linux, macOS, Windows) and macOS on ARM; elsewhere
``native_triggers`` returns None and redaction uses its pure-Python prefilter, which finds the same strings
or more (both are supersets of what the detectors match; the detector tests run with each).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

try:
    import hyperscan
except ImportError:  # no wheel for this machine (Linux on ARM): the caller falls back
    _NATIVE = False
else:
    _NATIVE = True


def _halt(*_: object) -> bool:
    return True  # the first match answers the question


def _collect(pattern: int, _start: int, _end: int, _flags: int, found: object) -> None:
    assert isinstance(found, set)
    found.add(pattern)  # each pattern is reported once (HS_FLAG_SINGLEMATCH)


class _Triggers:
    __slots__ = ("_database", "_local", "_prototype")

    def __init__(self, patterns: Sequence[tuple[bytes, bool]]) -> None:
        """``patterns``: (regex in Hyperscan's PCRE subset over UTF-8 bytes, caseless)."""
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        database.compile(
            expressions=[pattern for pattern, _ in patterns],
            ids=list(range(len(patterns))),
            elements=len(patterns),
            flags=[
                hyperscan.HS_FLAG_SINGLEMATCH | (hyperscan.HS_FLAG_CASELESS if caseless else 0)
                for _, caseless in patterns
            ],
        )
        self._database = database
        self._prototype = hyperscan.Scratch(database)
        self._local = threading.local()  # a scratch space per thread: scans run with the GIL released

    def _new_scratch(self) -> hyperscan.Scratch:
        scratch = self._local.scratch = self._prototype.clone()
        return scratch

    def __call__(self, text: str) -> bool:
        """Whether the text holds any pattern (the scan stops at the first)."""
        # The thread's scratch read here, not by a method: a Python call costs as much as scanning ~300 bytes,
        # and most scans are of clean strings of about a kilobyte.
        scratch = getattr(self._local, "scratch", None)
        try:
            # surrogatepass: a lone surrogate (JSON's "\ud800") becomes 3 bytes that no pattern reads.
            # Positional (data, handler, flags, context, scratch): keywords cost twice the scan of 300 bytes.
            self._database.scan(text.encode("utf-8", "surrogatepass"), _halt, 0, None, scratch or self._new_scratch())
        except hyperscan.ScanTerminated:
            return True
        return False

    def found(self, text: str) -> set[int]:
        """The indexes of the patterns the text holds."""
        found: set[int] = set()
        scratch = getattr(self._local, "scratch", None)
        self._database.scan(text.encode("utf-8", "surrogatepass"), _collect, 0, found, scratch or self._new_scratch())
        return found


def native_triggers(patterns: Sequence[tuple[bytes, bool]]) -> _Triggers | None:
    """Which of ``patterns`` a string holds (one native pass), or None where Hyperscan is missing."""
    return _Triggers(patterns) if _NATIVE else None
