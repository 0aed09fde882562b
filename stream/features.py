"""The features a city has for forecasting one series' next interval, built per reading.

From the series itself: the last values, the same interval one season (a day) ago, and its own
typical day (an online average per day type and time of day, `DayProfile`). From the calendar: time
of day, and working day / Saturday / Sunday-or-holiday (`calendar_days`). For PV, from the sun: the
site's clear-sky irradiance (`solar`), the last value's clear-sky index and the smart-persistence
forecast built from it. No weather feed enters: the only weather pvlib ships is a few US typical
years, unrelated to the SimBench profiles' weather, so it would be noise here.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from citygrid.stream.calendar_days import DAY_TYPES, SATURDAY, SUNDAY_OR_HOLIDAY, day_type
from citygrid.stream.solar import DAYLIGHT_MIN_ELEVATION_DEG, ClearSkyTable, Site, clear_sky

# Features in the series' own unit (kW, vehicles): a model rescales these by the series' level.
VALUE_KEYS = ("last", "mean4", "trend", "season", "profile", "profile_last", "base")


@dataclass
class DayProfile:
    """The series' typical day: an exponential average per (day type, interval of the day).

    3 x 96 floats for 15-minute energy series; it learns the shape a commercial load keeps on
    working days and drops on Sundays and holidays, which a day-ago lag gets wrong every Monday.
    """

    slots: int
    alpha: float = 0.15
    values: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.values:
            self.values = [math.nan] * (self.slots * DAY_TYPES)

    def expect(self, dtype: int, slot: int) -> float:
        """The average for that day type and slot (NaN until one was seen)."""
        return self.values[dtype * self.slots + slot % self.slots]

    def learn(self, dtype: int, slot: int, y: float) -> None:
        """Move that slot's average towards `y`."""
        i = dtype * self.slots + slot % self.slots
        old = self.values[i]
        self.values[i] = y if math.isnan(old) else old + self.alpha * (y - old)


@dataclass
class Solar:
    """What a PV series keeps between readings: its site and its last trustworthy clear-sky index.
    The site's clear-sky table is shared per process (`solar.clear_sky`), never pickled per device."""

    site: Site
    k_last: float = 0.0  # no forecast of sun until a daylight value was seen

    @property
    def table(self) -> ClearSkyTable:
        """The site's clear-sky table."""
        return clear_sky(self.site)

    def index(self, value: float, ts_ms: int) -> float:
        """The clear-sky index of `value` at `ts_ms` (kW per W/m²: the plant's size is unknown), or
        the last trustworthy one while the sun is too low for a ratio to mean anything."""
        ghi, elevation = self.table.at(ts_ms)
        if elevation >= DAYLIGHT_MIN_ELEVATION_DEG and ghi > 0:
            self.k_last = max(value, 0.0) / ghi
        return self.k_last


def slot_of(ts_ms: int, step_s: int, season: int) -> int:
    """The interval of the day (0 … season-1) starting at `ts_ms`."""
    return int(ts_ms // 1000 // step_s) % season


def features(history: deque[float], ts_ms: int, step_s: int, season: int,
             profile: DayProfile | None = None, solar: Solar | None = None) -> dict[str, float]:
    """Features for forecasting the interval after `history[-1]` (observed at `ts_ms`)."""
    target_ms = ts_ms + step_s * 1000
    target_s = target_ms / 1000
    tod = 2 * math.pi * (target_s % 86400) / 86400
    last = history[-1]
    recent = list(history)[-4:]
    x = {"last": last, "mean4": sum(recent) / len(recent), "tod_sin": math.sin(tod),
         "tod_cos": math.cos(tod), f"h{int(target_s // 3600 % 24):02d}": 1.0, "base": last}
    if len(history) >= 2:
        x["trend"] = last - history[-2]
    if len(history) >= season:
        x["season"] = history[-season]  # one season before the target interval
    if profile is not None:
        _calendar(x, profile, ts_ms, target_ms, step_s, season)
    if solar is not None:
        _sun(x, solar, last, ts_ms, target_ms)
    return x


def _calendar(x: dict[str, float], profile: DayProfile, ts_ms: int, target_ms: int, step_s: int,
              season: int) -> None:
    dtype = day_type(target_ms)
    if dtype == SATURDAY:
        x["saturday"] = 1.0
    elif dtype == SUNDAY_OR_HOLIDAY:
        x["sunday_holiday"] = 1.0
    now, then = profile.expect(day_type(ts_ms), slot_of(ts_ms, step_s, season)), \
        profile.expect(dtype, slot_of(target_ms, step_s, season))
    if not (math.isnan(now) or math.isnan(then)):
        x["profile"], x["profile_last"] = then, now


def _sun(x: dict[str, float], solar: Solar, last: float, ts_ms: int, target_ms: int) -> None:
    ghi, elevation = solar.table.at(target_ms)
    x["cs"] = ghi / 1000
    x["elevation"] = elevation / 90
    x["base"] = solar.index(last, ts_ms) * ghi  # smart persistence: last clear-sky index, target's sky
