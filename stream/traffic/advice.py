"""Signal advice from forecast flows: River forecasts each approach's next interval, Webster sets the plan.

Pure logic on plain state, shared by the closed loop's advisor process and the
in-process evaluation, so both run exactly the same decisions. An intersection's
reading names each approach lane's count `n.<green phase>.<lane>`; the phase
with the highest forecast flow ratio (flow / saturation flow) gets the most
green, and the cycle is Webster's delay-minimising cycle for the forecast
demand, C0 = (1.5 L + 5) / (1 - Y).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citygrid.commands import SignalAdvice
from citygrid.reading import Reading
from citygrid.settings import StreamSettings, TrafficSettings
from citygrid.stream.forecasting import SeriesState, observe

# Above this total flow ratio Webster's cycle diverges; the light is saturated and gets max_cycle_s.
MAX_FLOW_RATIO = 0.9


def webster(flow_ratios: list[float], intergreens_s: float, b: TrafficSettings) -> tuple[float, list[float]]:
    """(cycle, greens per phase) minimising delay for the given critical flow ratios y_i = q_i / s."""
    n = len(flow_ratios)
    lost = n * b.lost_s_per_phase
    y = min(sum(flow_ratios), MAX_FLOW_RATIO)
    cycle = min(max((1.5 * lost + 5.0) / (1.0 - y), b.min_cycle_s, intergreens_s + n * b.min_green_s),
                b.max_cycle_s)
    green_total = cycle - intergreens_s
    if sum(flow_ratios) <= 0:
        return cycle, [green_total / n] * n
    # Split what is left after every phase's minimum in proportion to the flow ratios.
    spare = max(green_total - n * b.min_green_s, 0.0)
    total = sum(flow_ratios)
    greens = [b.min_green_s + spare * r / total for r in flow_ratios]
    return cycle, greens


def phase_lanes(values: dict[str, float]) -> dict[str, int]:
    """lane -> green phase rank, from a reading's `n.<phase>.<lane>` value names."""
    lanes = {}
    for name in values:
        if name.startswith("n."):
            _, phase, lane = name.split(".", 2)
            lanes[lane] = int(phase)
    return lanes


@dataclass
class IntersectionState:
    """One intersection's per-lane forecasters (River, behind the stream's learn_one/predict_one protocol)."""

    lanes: dict[str, SeriesState] = field(default_factory=dict)
    last_seq: int = -1


class Advisor:
    """Turns intersection readings into signal advice, learning each approach's flow online."""

    def __init__(self, bounds: TrafficSettings, stream: StreamSettings) -> None:
        self.bounds, self.stream = bounds, stream
        self.states: dict[str, IntersectionState] = {}

    def forecast(self, reading: Reading) -> dict[str, float] | None:
        """Next-interval count per approach lane (None for a stale or repeated reading)."""
        state = self.states.setdefault(reading.device, IntersectionState())
        if reading.seq <= state.last_seq:
            return None
        state.last_seq = reading.seq
        out = {}
        lanes = phase_lanes(reading.values)
        for lane in lanes:
            series = state.lanes.get(lane)
            if series is None:
                series = state.lanes[lane] = SeriesState(
                    self.bounds.interval_s, self.stream.traffic_season_steps, model_name=self.stream.model)
            value = reading.values[f"n.{lanes[lane]}.{lane}"]
            out[lane] = max(observe(series, value, reading.ts_ms).forecast, 0.0)
        return out

    def advise(self, reading: Reading) -> SignalAdvice | None:
        """The advice for the interval after this reading, or None if the reading says nothing new."""
        forecasts = self.forecast(reading)
        if not forecasts:
            return None
        lanes = phase_lanes(reading.values)
        phases = max(lanes.values()) + 1
        per_hour = 3600.0 / self.bounds.interval_s
        ratios = [0.0] * phases
        for lane, count in forecasts.items():
            # The phase is as demanding as its busiest lane (its critical lane).
            ratios[lanes[lane]] = max(ratios[lanes[lane]], count * per_hour / self.bounds.saturation_veh_h)
        cycle, greens = webster(ratios, reading.values.get("plan_intergreen_s", 0.0), self.bounds)
        return SignalAdvice(reading.device, tuple(round(g, 1) for g in greens), round(cycle, 1),
                            reading.ts_ms + self.bounds.interval_s * 1000)
