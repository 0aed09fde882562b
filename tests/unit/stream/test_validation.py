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
