"""Weather-station driver: replays a real typical-meteorological-year record shipped with pvlib.

pvlib carries TMY3 files of real stations (default: 723170, Greensboro NC);
a citygrid weather station reports irradiance, air temperature and wind,
the inputs a PV nowcast needs, one reading per hour of the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from citygrid.edge.errors import SensorError

DEFAULT_STATION = "723170TYA.CSV"


@dataclass
class WeatherReplay:
    """Hourly TMY rows from `start_hour`, stamped one `step_s` apart from `start_ms`."""

    start_ms: int
    start_hour: int = 0
    hours: int | None = None
    station: str = DEFAULT_STATION
    step_s: int = 3600
    kind: str = "weather"

    def _rows(self) -> list[tuple[float, float, float, float]]:
        import pvlib  # pandas underneath: loaded only by the devices that replay weather

        path = Path(pvlib.__file__).parent / "data" / self.station
        if not path.exists():
            raise SensorError(f"pvlib ships no TMY file {self.station}; pick one in {path.parent}")
        data, _ = pvlib.iotools.read_tmy3(str(path), map_variables=True)
        cols = data[["ghi", "dni", "temp_air", "wind_speed"]].astype(float)
        return list(cols.itertuples(index=False, name=None))

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """Irradiance (W/m²), air temperature (°C) and wind speed (m/s) per hour."""
        rows = self._rows()
        n = len(rows) - self.start_hour if self.hours is None else self.hours
        for i in range(n):
            ghi, dni, temp, wind = rows[(self.start_hour + i) % len(rows)]
            yield self.start_ms + i * self.step_s * 1000, {
                "ghi_w_m2": ghi, "dni_w_m2": dni, "temp_c": temp, "wind_m_s": wind}
