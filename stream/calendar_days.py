"""Day types for load forecasting: working day, Saturday, Sunday or public holiday.

German standard load profiles (BDEW), and the SimBench profiles built on them, treat a public
holiday like a Sunday: a commercial profile's Ascension Thursday uses about a tenth of a normal
Thursday's energy. The `holidays` package is not a dependency of citygrid, so Germany's nationwide
public holidays are computed here (fixed dates plus the Easter-based ones, Easter by the anonymous
Gregorian algorithm); regional holidays (e.g. Reformation Day in the north-east) are not included.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

WORKDAY, SATURDAY, SUNDAY_OR_HOLIDAY = 0, 1, 2
DAY_TYPES = 3


def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday of `year` (the anonymous Gregorian computus, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    lw = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * lw) // 451
    month, day = divmod(h + lw - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


@lru_cache(maxsize=64)
def public_holidays(year: int) -> frozenset[dt.date]:
    """Germany's nationwide public holidays in `year`."""
    e = easter(year)
    fixed = [(1, 1), (5, 1), (10, 3), (12, 25), (12, 26)]
    moving = [-2, 1, 39, 50]  # Good Friday, Easter Monday, Ascension Day, Whit Monday
    days = [dt.date(year, mth, day) for mth, day in fixed] + [e + dt.timedelta(days=k) for k in moving]
    return frozenset(days)


def day_type(ts_ms: int, utc_offset_s: int = 3600) -> int:
    """WORKDAY, SATURDAY or SUNDAY_OR_HOLIDAY of the local day containing `ts_ms` (CET by default:
    the local calendar decides, not UTC's)."""
    day = dt.datetime.fromtimestamp(ts_ms / 1000 + utc_offset_s, dt.UTC).date()
    if day.weekday() == 6 or day in public_holidays(day.year):
        return SUNDAY_OR_HOLIDAY
    return SATURDAY if day.weekday() == 5 else WORKDAY
