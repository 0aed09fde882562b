"""Feature rows of the on-device model (pure logic)."""

from __future__ import annotations

import math

from citygrid.edge.inference import FEATURES, features


def test_features_are_newest_first_and_padded() -> None:
    row = features([1.0, 2.0], ts_ms=6 * 3600 * 1000)  # 06:00 UTC: a quarter of the day
    assert len(row) == len(FEATURES)
    assert row[:4] == [2.0, 1.0, 1.0, 1.0]
    assert math.isclose(row[4], 1.0) and abs(row[5]) < 1e-9
