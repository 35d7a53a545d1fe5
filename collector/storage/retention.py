"""What both engines' retention decide alike (``sqlite/retention.py``, ``postgres/retention.py``): when to delete by
size and down to what. Each engine measures its size and deletes in its own way."""

from __future__ import annotations

from collector.config import RetentionSettings


class SizeBound:
    """Deleting by size: once the bounded bytes pass ``trigger_bytes``, or a write failed for want of disk space,
    down to ``low_water_mark`` of ``max_size`` (of the present size, after a full disk), a step at a time."""

    settings: RetentionSettings
    _target: int | None = None  # deleting by size down to this many bytes, until reached
    _reason: str = "size"  # why: "size" or "disk_full"
    _disk_full: bool = False

    @property
    def max_size(self) -> int | None:
        return self.settings.max_size

    @property
    def trigger_bytes(self) -> int:
        """Deletion by size starts halfway between the low-water mark and ``max_size``, so that what
        arrives until the next check still finds the database under ``max_size``."""
        assert self.max_size is not None
        return int(self.max_size * (1 + self.settings.low_water_mark) / 2)

    def disk_full(self) -> None:
        """A write failed for want of disk space: with ``max_size`` set, the next step frees space
        (down to the low-water mark of the present size) even below the bound."""
        if self.max_size is not None:
            self._disk_full = True

    @property
    def size_due(self) -> bool:
        """Whether a step looks at the size: a bound is set, a deletion is under way, or the disk was full."""
        return self._disk_full or self._target is not None or self.max_size is not None

    def size_target(self, bounded_bytes: int) -> int | None:
        """The bytes to delete down to, the bounded ones being ``bounded_bytes`` now; None when nothing is due.
        The engine sets ``_target`` back to None once it is reached, or nothing more can be deleted."""
        if self._disk_full and self._target is None:
            self._reason = "disk_full"
            self._target = int(min(bounded_bytes, self.max_size or bounded_bytes) * self.settings.low_water_mark)
        elif self._target is None:
            if self.max_size is None or bounded_bytes <= self.trigger_bytes:
                return None
            self._reason = "size"
            self._target = int(self.max_size * self.settings.low_water_mark)
        self._disk_full = False
        return self._target
