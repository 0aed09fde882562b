"""The anchorer's commit points under a continuous stream."""

from __future__ import annotations

from citygrid.ledger.offsets import OffsetTracker


def test_commits_up_to_the_lowest_offset_an_open_batch_holds() -> None:
    t = OffsetTracker()
    for off in range(5):
        t.consume("p0", off, 0)
    for off in range(5, 8):
        t.consume("p0", off, 3600)
    assert t.committable() == {"p0": 0}
    t.release(0)
    # A stream that never pauses still commits everything of the closed interval.
    assert t.committable() == {"p0": 5}
    t.consume("p0", 8, 7200)
    t.release(3600)
    assert t.committable() == {"p0": 8}
    t.release(7200)
    assert t.committable() == {"p0": 9}


def test_records_that_need_no_batch_are_committable_at_once() -> None:
    t = OffsetTracker()
    t.consume("p0", 0, None)
    t.consume("p0", 1, None)
    assert t.committable() == {"p0": 2}


def test_partitions_are_independent_and_late_readings_hold_back_only_their_partition() -> None:
    t = OffsetTracker()
    t.consume("p0", 10, 3600)
    t.consume("p1", 4, 0)  # a late reading of an older, still open interval
    t.consume("p1", 5, 3600)
    t.consume("p0", 11, 0)
    assert t.committable() == {"p0": 10, "p1": 4}
    t.release(0)
    assert t.committable() == {"p0": 10, "p1": 5}
    t.release(3600)
    assert t.committable() == {"p0": 12, "p1": 6}
