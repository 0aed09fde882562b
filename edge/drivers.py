"""Sensor drivers: one small interface, one file per kind of source.

A driver yields measurements as (ts_ms, values); the agent adds the model
output, signs and publishes. Replay drivers play real recorded data on a
time-compressed clock so a demo covers hours of a day in seconds.

Drivers of the same shape, one file per kind of source: `ProfileReplay` here
(SimBench household load and PV), `sumo_loops.SumoLoopReplay` (SUMO induction
loops), `weather_replay.WeatherReplay` (pvlib TMY weather) and
`modbus_meter.ModbusMeter` (a real meter over Modbus TCP).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from citygrid.edge.profiles import STEP_S, Profile


class Driver(Protocol):
    """What every sensor driver provides."""

    kind: str

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """Yield (timestamp ms, named values) until the source ends."""
        ...


@dataclass
class ProfileReplay:
    """Replays a SimBench profile from `start_step`, stamping readings on a clock that
    begins at `start_ms` and advances one profile step (15 min) per reading."""

    profile: Profile
    start_ms: int
    start_step: int = 0
    steps: int | None = None

    @property
    def kind(self) -> str:
        return self.profile.kind

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        n = len(self.profile.kw) - self.start_step if self.steps is None else self.steps
        for i in range(n):
            kw = float(self.profile.kw[(self.start_step + i) % len(self.profile.kw)])
            yield self.start_ms + i * STEP_S * 1000, {"p_kw": round(kw, 4)}
