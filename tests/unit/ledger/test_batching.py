"""Per-interval batching of readings for anchoring."""

from __future__ import annotations

from citygrid.ledger.batching import IntervalBatcher

H = 3_600_000


def test_interval_closes_only_once_the_watermark_passes_end_plus_grace() -> None:
    b = IntervalBatcher(interval_ms=H, grace_ms=H // 2)
    b.add("d1", 0, 10, b"r0")
    b.add("d1", 1, H + 10, b"r1")
    assert b.closed() == []
    b.add("d1", 2, H + H // 2, b"r2")
    (start, leaves), = b.closed()
    assert start == 0 and leaves == [("d1", 0, b"r0")]
    assert len(b) == 2


def test_duplicates_in_an_open_batch_are_dropped() -> None:
    b = IntervalBatcher(H, H)
    assert b.add("d1", 5, 100, b"x")
    assert not b.add("d1", 5, 100, b"x")
    assert len(b) == 1


def test_drain_returns_all_in_order_and_leaves_sorted() -> None:
    b = IntervalBatcher(H, H)
    b.add("d2", 1, H + 1, b"c")
    b.add("d2", 0, 1, b"b")
    b.add("d1", 0, 2, b"a")
    drained = b.drain()
    assert [s for s, _ in drained] == [0, H]
    assert drained[0][1] == [("d1", 0, b"a"), ("d2", 0, b"b")]
    assert len(b) == 0
