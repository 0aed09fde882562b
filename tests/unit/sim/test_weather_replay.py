"""The pvlib weather driver replays a real TMY record: dark nights, sunny noons, plausible values."""

from __future__ import annotations

import pytest

from citygrid.edge.errors import SensorError
from citygrid.sim.weather_replay import WeatherReplay


def test_a_summer_day_has_dark_nights_and_bright_noon() -> None:
    day = list(WeatherReplay(1_700_000_000_000, start_hour=24 * 180, hours=24).measurements())
    assert len(day) == 24 and day[1][0] - day[0][0] == 3_600_000
    ghi = [v["ghi_w_m2"] for _, v in day]
    assert min(ghi) == 0 and max(ghi) > 400
    assert all(-30 < v["temp_c"] < 45 and v["wind_m_s"] >= 0 for _, v in day)


def test_missing_station_file_says_what_to_do() -> None:
    with pytest.raises(SensorError, match="pick one"):
        next(WeatherReplay(1_700_000_000_000, station="nope.csv").measurements())
