"""Clear-sky irradiance and daylight for the grid's site, from pvlib, as a cheap per-reading lookup.

PV output is mostly the sun's geometry times the weather; the geometry is known in advance, so
forecasters and the smart-persistence baseline divide it out (the clear-sky index) and PV skill is
scored only while the sun is up. pvlib's Ineichen-Perez model (with its Linke-turbidity climatology)
is computed once per process for one leap year at quarter-hour resolution (366 x 96 values, mid
interval, UTC) and looked up by day of year and time of day: a reading then costs a dict of floats,
not a pandas call, and no table ever enters a device's pickled state.

The default site is where SimBench draws its LV grids (bus coordinates around 53.4-53.7 °N,
11.4-11.8 °E, north-east Germany; SimBench's grids are synthetic, their coordinates illustrative);
`sim.profiles.grid_site` gives each grid's own mean bus position.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TABLE_STEP_S = 900  # the clear-sky table's resolution
STEPS_PER_DAY = 86400 // TABLE_STEP_S
DAYLIGHT_MIN_ELEVATION_DEG = 5.0  # below 5°, PV is mostly diffuse noise and ratios blow up


@dataclass(frozen=True)
class Site:
    """Where the panels are: latitude and longitude in degrees (north, east)."""

    latitude: float = 53.64
    longitude: float = 11.41


@dataclass(frozen=True)
class ClearSkyTable:
    """Clear-sky GHI (W/m²) and solar elevation (°) per quarter-hour of a leap year, for one site."""

    site: Site
    ghi: np.ndarray  # shape (366 * 96,)
    elevation: np.ndarray

    def index(self, ts_ms: int) -> int:
        """The table row of the quarter-hour containing `ts_ms` (UTC; day of year, leap-year rows)."""
        t = time.gmtime(ts_ms // 1000)
        return (t.tm_yday - 1) * STEPS_PER_DAY + (t.tm_hour * 3600 + t.tm_min * 60) // TABLE_STEP_S

    def at(self, ts_ms: int) -> tuple[float, float]:
        """(clear-sky GHI, solar elevation) of the quarter-hour starting at or before `ts_ms`."""
        i = self.index(ts_ms)
        return float(self.ghi[i]), float(self.elevation[i])

    def daylight(self, ts_ms: int) -> bool:
        """Whether the sun is high enough in that quarter-hour for PV to be scored."""
        return self.at(ts_ms)[1] >= DAYLIGHT_MIN_ELEVATION_DEG


@lru_cache(maxsize=8)
def clear_sky(site: Site = Site()) -> ClearSkyTable:
    """The site's clear-sky table, built once per process with pvlib (about a second)."""
    import pandas as pd  # pvlib and pandas only where PV is forecast
    import pvlib

    stamps = pd.date_range("2016-01-01", periods=366 * STEPS_PER_DAY, freq=f"{TABLE_STEP_S}s", tz="UTC")
    mid = stamps + pd.Timedelta(seconds=TABLE_STEP_S / 2)  # a quarter-hour's value is its mean
    loc = pvlib.location.Location(site.latitude, site.longitude)
    cs = loc.get_clearsky(mid, model="ineichen")
    elevation = loc.get_solarposition(mid)["apparent_elevation"]
    return ClearSkyTable(site, cs["ghi"].to_numpy(float), elevation.to_numpy(float))
