"""Grouping readings into per-interval batches, closed by event-time watermark or idleness.

Pure logic, no I/O: the anchorer feeds it readings and asks which intervals
are complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IntervalBatcher:
    """Open batches keyed by interval start; an interval closes once readings
    `grace_ms` past its end have been seen, or when drained on idle."""

    interval_ms: int
    grace_ms: int
    open: dict[int, dict[tuple[str, int], bytes]] = field(default_factory=dict)
    watermark_ms: int = 0

    def interval_of(self, ts_ms: int) -> int:
        """The start of the interval a reading's timestamp falls in."""
        return ts_ms - ts_ms % self.interval_ms

    def add(self, device: str, seq: int, ts_ms: int, envelope: bytes) -> bool:
        """Add a reading; False if it is already in an open batch."""
        start = self.interval_of(ts_ms)
        batch = self.open.setdefault(start, {})
        if (device, seq) in batch:
            return False
        batch[(device, seq)] = envelope
        self.watermark_ms = max(self.watermark_ms, ts_ms)
        return True

    def held(self, device: str, seq: int) -> bytes | None:
        """The envelope some open batch holds for (device, seq), or None (few batches are open)."""
        for batch in self.open.values():
            if (device, seq) in batch:
                return batch[(device, seq)]
        return None

    def closed(self) -> list[tuple[int, list[tuple[str, int, bytes]]]]:
        """Remove and return the intervals the watermark has passed."""
        due = [s for s in self.open if s + self.interval_ms + self.grace_ms <= self.watermark_ms]
        return [self._take(s) for s in sorted(due)]

    def drain(self) -> list[tuple[int, list[tuple[str, int, bytes]]]]:
        """Remove and return every open interval."""
        return [self._take(s) for s in sorted(self.open)]

    def __len__(self) -> int:
        return sum(len(b) for b in self.open.values())

    def _take(self, start: int) -> tuple[int, list[tuple[str, int, bytes]]]:
        # Sorted leaves make the tree, and so the root, independent of arrival order.
        batch = self.open.pop(start)
        return start, [(d, s, batch[(d, s)]) for d, s in sorted(batch)]
