"""The signal controller: decides the light's next green every second on the device, within bounds.

The bounds (minimum green, the program's own yellow and all-red between greens,
a maximum green and a maximum red per movement) are enforced here whatever an
advice says, so a wrong or malicious advisor can never make a light unsafe.
Stream advice only lowers each green's ceiling (where the forecasts say the cycle
cannot hold every green's demand): `apply` keeps it within the bounds and engages the controller; `fall_back`
drops it and hands the light back to its own stored program, unless the device was
deployed `autonomous` (it then goes on deciding by its own sensors alone). A light
whose program has fewer than two distinct greens is left to run its own program.
"""

from __future__ import annotations

from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from citygrid.commands import AdviceRejected, SignalAdvice
from citygrid.edge.traffic.detectors import ApproachSensors
from citygrid.edge.traffic.phases import Layout
from citygrid.edge.traffic.pressure import (
    Bounds,
    choose_citygrid,
    choose_reference,
    demands,
    lane_shares,
    queue_clearance_s,
)
from citygrid.settings import TrafficSettings

log = structlog.get_logger(__name__)
ADVICE_APPLIED = Counter("citygrid_traffic_advice_applied_total", "Signal advice applied to a light")
FALLBACKS = Counter("citygrid_traffic_fallbacks_total", "Times a light fell back from stale advice")
ADVISED = Gauge("citygrid_traffic_advised", "1 while a light runs advice, else 0", ["tls"])
POLICIES = ("citygrid", "max-pressure")
# What TraCI names the program of a light whose state the controller sets second by second.
ADVISED_PROGRAM = "online"


def safe_greens(advised: tuple[float, ...] | list[float], bounds: TrafficSettings) -> list[float]:
    """Advised green ceilings clamped to [min, max] green.

    Ceilings are not a plan, so they need not add up to a cycle: what bounds the cycle is the maximum
    red per movement, which the controller keeps whatever the ceilings say."""
    return [round(min(max(float(g), bounds.min_green_s), bounds.max_green_s), 1) for g in advised]


class SignalController:
    """Runs one light second by second: a green chosen by pressure, kept within the device's bounds.

    The light runs its own stored program until the controller is engaged: by valid advice (`apply`),
    or from the start when `autonomous` (a device deployed to decide alone). `fall_back` hands a light
    that is not autonomous back to its own program at the point of it that matches what it shows.
    """

    def __init__(self, sim: Any, tls: str, bounds: TrafficSettings, policy: str = "citygrid",
                 autonomous: bool = False) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; use one of {POLICIES}")
        self.sim, self.tls, self.bounds, self.policy = sim, tls, bounds, policy
        self.autonomous = autonomous
        self.layout = Layout.read(sim, tls)
        self.sensors = ApproachSensors(sim, self.layout)
        self.shares = lane_shares(self.layout)
        # The maximum red is one maximum cycle: no movement with a queue waits longer than that.
        self.limits = Bounds(bounds.min_green_s, bounds.max_green_s, bounds.max_cycle_s)
        self.advised = self.engaged = False
        self.greens_s: list[float] = [bounds.max_green_s] * len(self.layout.green)
        self.current = self.target = 0
        self.plan: list[tuple[str, float]] = []  # the intergreen still to run before `target`
        self.green_since = self.step_until = self.started = sim.simulation.getTime()
        self.last_green: dict[int, float] = {}
        self.hold_s: float | None = None
        self.headway_s = 3600.0 / bounds.saturation_veh_h  # one vehicle per lane and headway at saturation
        self.demand_sum = [0.0] * len(self.layout.green)
        self.demand_n = 0
        if autonomous:
            self._engage()

    def _engage(self) -> None:
        """Take the light over from its own program where it stands (mid-green, or mid-intergreen)."""
        if self.engaged or not self.layout.switchable:
            return
        tl, now = self.sim.trafficlight, self.sim.simulation.getTime()
        phase = tl.getPhase(self.tls)
        if phase in self.layout.green:
            self.current = self.target = self.layout.green.index(phase)
            self.green_since = now - tl.getSpentDuration(self.tls)
            self.plan = []
        else:  # finish the program's own intergreen, then its next green
            k = phase
            while k not in self.layout.green:
                k = (k + 1) % len(self.layout.phases)
            self.target = self.layout.green.index(k)
            self.plan = [(tl.getRedYellowGreenState(self.tls), max(tl.getNextSwitch(self.tls) - now, 0.0))]
            self.step_until = now
        tl.setRedYellowGreenState(self.tls, tl.getRedYellowGreenState(self.tls))
        self.engaged = True

    def _release(self) -> None:
        """Back to the own program at the phase that shows no green this light does not show now."""
        tl = self.sim.trafficlight
        green = self.layout.green[self.current]
        phase = green
        if self.plan or self.target != self.current:
            # Mid-intergreen: the program's own yellow after this green (or its all-red, if ours is red).
            phase = (green + 1) % len(self.layout.phases)
            state = tl.getRedYellowGreenState(self.tls)
            if "y" not in state.lower() and (phase + 1) % len(self.layout.phases) not in self.layout.green:
                phase = (phase + 1) % len(self.layout.phases)
        tl.setProgram(self.tls, self.layout.program)
        tl.setPhase(self.tls, phase)
        self.engaged = False
        self.plan, self.target = [], self.current

    def step(self, now: float) -> None:
        """One second: read the sensors, keep or end the green, run the intergreen, start the next."""
        lanes = self.sensors.read()
        for k, d in enumerate(demands(self.layout, self.shares, lanes)):
            self.demand_sum[k] += d
        self.demand_n += 1
        if not self.engaged:
            return
        if self.plan or self.target != self.current:
            self._run_intergreen(now)
            return
        for idx in self.layout.serves[self.current]:
            self.last_green[idx] = now
        elapsed = now - self.green_since
        if self.policy == "max-pressure":
            nxt = choose_reference(self.layout, lanes, self.current, elapsed)
        else:
            red_for = {idx: now - self.last_green.get(idx, self.started) for idx in self.shares}
            if self.hold_s is None:  # the first second of this green: the queue it has to clear
                self.hold_s = queue_clearance_s(self.layout, self.current, lanes, self.headway_s)
            nxt = choose_citygrid(self.layout, lanes, self.current, elapsed, red_for,
                                  self.greens_s[self.current], self.limits, self.shares, self.hold_s)
        if nxt != self.current:
            self.target = nxt
            self.plan = self.layout.transition(self.current, nxt)
            self.step_until = now
            self._run_intergreen(now)

    def _run_intergreen(self, now: float) -> None:
        if now < self.step_until:
            return
        tl = self.sim.trafficlight
        if self.plan:
            state, seconds = self.plan.pop(0)
            tl.setRedYellowGreenState(self.tls, state)
            self.step_until = now + seconds
            return
        self.current = self.target
        tl.setRedYellowGreenState(self.tls, self.layout.green_state(self.current))
        self.green_since = now
        self.hold_s = None

    def take_demand(self) -> list[float]:
        """Mean vehicles present per green since the last call (the interval's reading), then reset."""
        n = max(self.demand_n, 1)
        out = [round(s / n, 3) for s in self.demand_sum]
        self.demand_sum = [0.0] * len(self.layout.green)
        self.demand_n = 0
        return out

    def reading_values(self) -> dict[str, float]:
        """The interval's reading: demand per green (`d.<k>`) and what the advisor must know of the plan."""
        values = {f"d.{k}": d for k, d in enumerate(self.take_demand())}
        values["plan_phases"] = float(len(self.layout.green) if self.layout.switchable else 0)
        values["plan_intergreen_s"] = float(self.layout.intergreens_s)
        values["plan_advised"] = 1.0 if self.advised else 0.0
        return values

    def apply(self, advice: SignalAdvice) -> list[float]:
        """Take the advice's greens as ceilings (clamped to the bounds); return them."""
        if len(advice.greens_s) != len(self.layout.green):
            raise AdviceRejected(f"advice for {self.tls} has {len(advice.greens_s)} greens, the light has "
                                 f"{len(self.layout.green)}; the advisor must read the light's layout")
        self.greens_s = safe_greens(advice.greens_s, self.bounds)
        self.advised = True
        self._engage()
        ADVICE_APPLIED.inc()
        ADVISED.labels(self.tls).set(1)
        return self.greens_s

    def fall_back(self) -> None:
        """Drop the advice: an autonomous light decides alone, any other returns to its own program."""
        self.advised = False
        self.greens_s = [self.bounds.max_green_s] * len(self.layout.green)
        if self.engaged and not self.autonomous:
            self._release()
        FALLBACKS.inc()
        ADVISED.labels(self.tls).set(0)
        log.warning("traffic_fallback", tls=self.tls, reason="no fresh advice")
