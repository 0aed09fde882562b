"""The scores forecasts are judged by: pinball loss, skill, coverage, and the daylight mask."""

from __future__ import annotations

import pytest

from citygrid.stream.scores import Scores, pinball, skill
from citygrid.stream.solar import Site, clear_sky

MIDNIGHT_JUNE = 1_466_035_200_000  # 2016-06-16T00:00Z
MIDNIGHT_DEC = 1_481_846_400_000  # 2016-12-16T00:00Z


def test_pinball_weighs_under_and_over_forecasts_by_the_quantile() -> None:
    assert pinball(10.0, 8.0, 0.9) == pytest.approx(1.8)  # under: tau x miss
    assert pinball(10.0, 12.0, 0.9) == pytest.approx(0.2)  # over: (1 - tau) x miss
    assert pinball(10.0, 12.0, 0.5) == pytest.approx(1.0)  # half the absolute error at the median
    assert pinball(3.0, 3.0, 0.1) == 0.0


def test_skill_is_one_minus_the_mae_ratio() -> None:
    assert skill(0.8, 1.0) == pytest.approx(0.2)
    assert skill(1.2, 1.0) == pytest.approx(-0.2)
    assert skill(1.0, 0.0) != skill(1.0, 0.0)  # NaN: no baseline error to beat


def test_scores_count_coverage_and_every_baseline() -> None:
    s = Scores()
    s.add(1.0, 1.5, {"persistence": 0.0, "seasonal_naive": 2.0, "smart_persistence": 1.0}, (0.5, 1.5, 2.0))
    s.add(3.0, 2.0, {"persistence": 1.0, "seasonal_naive": 3.0, "smart_persistence": 1.0}, (1.0, 2.0, 2.5))
    assert s.n == 2 and s.coverage() == 0.5
    assert s.mae() == {"model": 0.75, "persistence": 1.5, "seasonal_naive": 0.5, "smart_persistence": 1.0}
    assert s.mean_pinball()[1] == pytest.approx((0.25 + 0.5) / 2)


def _daylight_hours(midnight_ms: int) -> float:
    table = clear_sky(Site())
    return sum(table.daylight(midnight_ms + i * 900_000) for i in range(96)) / 4


def test_daylight_follows_the_sun_at_the_site() -> None:
    table = clear_sky(Site())
    assert table.daylight(MIDNIGHT_JUNE + 11 * 3_600_000)  # 11:00 UTC is about solar noon at 11.4 °E
    assert not table.daylight(MIDNIGHT_JUNE)
    assert 14 < _daylight_hours(MIDNIGHT_JUNE) < 17  # 53.6 °N: long summer days ...
    assert 5 < _daylight_hours(MIDNIGHT_DEC) < 7.5  # ... short winter ones (sun above 5°)
    ghi, elevation = table.at(MIDNIGHT_JUNE + 11 * 3_600_000)
    assert 750 < ghi < 1000 and 55 < elevation < 61  # solar noon near midsummer: 90 - 53.6 + 23.4
