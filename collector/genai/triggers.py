"""One native pass over a string: does it hold any of a set of trigger patterns? (Hyperscan.)

Redaction asks this of every string it could scan (``redact._TRIGGERS``); most hold none and are returned
untouched without a Python-level look at their characters. Hyperscan runs every pattern at once over the
text's UTF-8 bytes in one linear pass, with the GIL released, and stops at the first match.

The wheels of ``hyperscan`` exist for x86-64 (Linux, macOS, Windows) and macOS on ARM; elsewhere
``native_triggers`` returns None and redaction uses its pure-Python prefilter, which finds the same strings
or more (both are supersets of what the detectors match; the detector tests run with each).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

try:
    import hyperscan
except ImportError:  # no wheel for this machine (Linux on ARM): the caller falls back
    _NATIVE = False
else:
    _NATIVE = True


def _halt(*_: object) -> bool:
    return True  # the first match answers the question


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

    def __call__(self, text: str) -> bool:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._prototype.clone()
        try:
            # surrogatepass: a lone surrogate (JSON's "\ud800") becomes 3 bytes that no pattern reads.
            # Positional (data, handler, flags, context, scratch): keywords cost twice the scan of 300 bytes.
            self._database.scan(text.encode("utf-8", "surrogatepass"), _halt, 0, None, scratch)
        except hyperscan.ScanTerminated:
            return True
        return False


def native_triggers(patterns: Sequence[tuple[bytes, bool]]) -> Callable[[str], bool] | None:
    """Whether a string holds any of ``patterns`` (one native pass), or None where Hyperscan is missing."""
    return _Triggers(patterns) if _NATIVE else None
