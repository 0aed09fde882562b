"""Sensor drivers: one small interface, one file per kind of source.

A driver yields measurements as (ts_ms, values); the agent adds the model
output, signs and publishes. Replay drivers play real recorded data on a
time-compressed clock so a demo covers hours of a day in seconds.

Drivers of the same shape, one file per kind of source: `modbus_meter.ModbusMeter`
(a real meter over Modbus TCP) on devices; the replays of recorded data live with
the simulators (`citygrid.sim.profiles.ProfileReplay` for SimBench load and PV,
`citygrid.sim.weather_replay.WeatherReplay`, `citygrid.sim.traffic.loops.SumoLoopReplay`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Driver(Protocol):
    """What every sensor driver provides."""

    kind: str

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """Yield (timestamp ms, named values) until the source ends."""
        ...
