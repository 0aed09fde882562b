"""Which Kafka offsets the anchorer may commit while batches are still open.

Pure logic, no I/O. A record is safe to skip after a restart once its reading is in the anchor
store (or needed no batch); so per partition the commit point is the lowest offset still held by an
open batch, or one past the last consumed record when none is held. Committing only when no batch
was open at all would never commit under a continuous stream.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class OffsetTracker:
    """Offsets held by open batches (keyed by interval start) and the consumed end per partition."""

    held: dict[Hashable, dict[int, set[int]]] = field(default_factory=lambda: defaultdict(dict))
    consumed: dict[Hashable, int] = field(default_factory=dict)

    def consume(self, partition: Hashable, offset: int, interval_start_ms: int | None) -> None:
        """Note a consumed record, held by the batch of `interval_start_ms` (None: nothing to hold)."""
        self.consumed[partition] = max(self.consumed.get(partition, -1), offset)
        if interval_start_ms is not None:
            self.held[partition].setdefault(interval_start_ms, set()).add(offset)

    def release(self, interval_start_ms: int) -> None:
        """The batch of this interval is durable in the anchor store; its records may be committed."""
        for by_interval in self.held.values():
            by_interval.pop(interval_start_ms, None)

    def committable(self) -> dict[Hashable, int]:
        """Per partition, the offset to commit: the next record a restarted consumer must read."""
        out = {}
        for partition, last in self.consumed.items():
            lows = [min(offsets) for offsets in self.held.get(partition, {}).values() if offsets]
            out[partition] = min(lows) if lows else last + 1
        return out
