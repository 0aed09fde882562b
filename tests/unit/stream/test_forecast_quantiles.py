"""Quantile tracking: P10/P50/P90 calibrate to their levels on any residuals, and stay ordered."""

from __future__ import annotations

import numpy as np

from citygrid.stream.calendar_days import SATURDAY, SUNDAY_OR_HOLIDAY, WORKDAY, day_type, easter
from citygrid.stream.quantiles import ResidualQuantiles


def _coverage(residuals: np.ndarray, hours: np.ndarray) -> tuple[float, float, float]:
    q = ResidualQuantiles()
    below10 = below50 = inside = 0
    for r, h in zip(residuals, hours, strict=True):
        p10, p50, p90 = q.bands(0.0, int(h))
        assert p10 <= p50 <= p90
        below10 += r < p10
        below50 += r < p50
        inside += p10 <= r <= p90
        q.learn(float(r), int(h))
    n = len(residuals)
    return below10 / n, below50 / n, inside / n


def test_the_band_covers_eighty_percent_of_skewed_heteroscedastic_residuals() -> None:
    rng = np.random.default_rng(7)
    hours = np.arange(20_000) // 4 % 24
    scale = 0.2 + (hours >= 17) * 2.0  # evenings err ten times more
    residuals = scale * (rng.lognormal(0, 0.8, hours.size) - 1.2)  # skewed, not centred
    b10, b50, inside = _coverage(residuals, hours)
    assert abs(b10 - 0.1) < 0.02 and abs(b50 - 0.5) < 0.02 and abs(inside - 0.8) < 0.03


def test_a_floor_keeps_pv_quantiles_non_negative() -> None:
    q = ResidualQuantiles()
    for _ in range(200):
        q.learn(-1.0, 12)
        q.learn(1.0, 12)
    p10, p50, p90 = q.bands(0.1, 12, floor=0.0)
    assert p10 == 0.0 and p50 >= 0.0 and p90 > 0.1


def test_day_types_follow_german_public_holidays() -> None:
    assert easter(2016).isoformat() == "2016-03-27" and easter(2025).isoformat() == "2025-04-20"
    noon = 1_462_449_600_000  # 2016-05-05T12:00Z, Ascension Day (a Thursday)
    assert day_type(noon) == SUNDAY_OR_HOLIDAY
    assert day_type(noon + 86_400_000) == WORKDAY
    assert day_type(noon + 2 * 86_400_000) == SATURDAY
    assert day_type(noon + 3 * 86_400_000) == SUNDAY_OR_HOLIDAY
