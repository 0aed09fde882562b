"""The replay window: duplicates and replays are refused, forgotten readings pass again."""

from __future__ import annotations

import pytest

from citygrid.errors import DuplicateReading, ReplayedReading
from citygrid.stream.validation import ReplayWindow


def test_duplicate_and_too_old_sequence_numbers_are_refused() -> None:
    w = ReplayWindow(size=10)
    for seq in (0, 1, 12, 20):
        w.check("d", seq)
        w.accept("d", seq)
    with pytest.raises(DuplicateReading):
        w.check("d", 12)
    with pytest.raises(ReplayedReading):
        w.check("d", 5)
    w.check("d", 15)  # out of order but inside the window
    w.check("e", 2)  # other devices are independent


def test_a_forgotten_reading_may_be_delivered_again() -> None:
    w = ReplayWindow()
    w.accept("d", 7)
    w.forget("d", 7)
    w.check("d", 7)


def test_the_window_is_a_bitmap_that_slides_and_forgets_what_falls_out() -> None:
    w = ReplayWindow(size=8)
    for seq in (3, 5, 6):
        w.accept("d", seq)
    w.check("d", 4)  # a gap inside the window is still welcome
    w.accept("d", 20)  # far ahead: everything up to 12 is now out of the window
    with pytest.raises(ReplayedReading):
        w.check("d", 12)
    w.check("d", 13)
    w.accept("d", 13)
    with pytest.raises(DuplicateReading):
        w.check("d", 13)
    assert w.bits["d"] < 1 << 8  # never wider than the window


def test_a_window_survives_its_changelog_record() -> None:
    w = ReplayWindow()
    for seq in [*range(100), 150, 152, 4000, 4001]:
        w.accept("d", seq)
    again = ReplayWindow()
    again.restore("d", w.encode("d"))
    assert (again.highest, again.bits) == (w.highest, w.bits)
    with pytest.raises(DuplicateReading):
        again.check("d", 152)
    again.check("d", 151)


def test_a_device_reporting_in_order_costs_a_few_bytes() -> None:
    w = ReplayWindow()
    for seq in range(10_000):
        w.accept("d", seq)
    assert len(w.encode("d")) < 16  # [highest, run of 4096 seen, nothing else], not a 512-byte bitmap
    again = ReplayWindow()
    again.restore("d", w.encode("d"))
    assert again.bits["d"] == (1 << 4096) - 1
