"""The signal controller: runs the advised plan within the device's safety bounds, or the light's own.

The bounds (minimum and maximum greens, fixed yellows and all-reds, maximum
cycle) are enforced here, on the device, whatever an advice says, so a wrong
or malicious advisor can never make a light unsafe; `fall_back` returns the
light to the plan it was installed with.
"""

from __future__ import annotations

from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from citygrid.commands import AdviceRejected, SignalAdvice
from citygrid.edge.traffic.phases import Layout
from citygrid.settings import TrafficSettings

log = structlog.get_logger(__name__)
ADVICE_APPLIED = Counter("citygrid_traffic_advice_applied_total", "Signal advice applied to a light")
FALLBACKS = Counter("citygrid_traffic_fallbacks_total", "Times a light fell back to its own plan")
ADVISED = Gauge("citygrid_traffic_advised", "1 while a light runs advice, 0 on its own plan", ["tls"])

ADVISED_PROGRAM = "citygrid"
# TraCI's program types (traci.constants), repeated so a device needs no SUMO tools to import this.
TRAFFICLIGHT_TYPE_STATIC, TRAFFICLIGHT_TYPE_ACTUATED = 0, 3


def safe_greens(advised: tuple[float, ...] | list[float], intergreens_s: float,
                bounds: TrafficSettings) -> list[float]:
    """Advised greens clamped to [min, max] green, then shrunk so the cycle stays within max_cycle_s."""
    greens = [min(max(float(g), bounds.min_green_s), bounds.max_green_s) for g in advised]
    budget = bounds.max_cycle_s - intergreens_s
    excess = sum(greens) - budget
    if excess > 0:
        # Take the excess from each green in proportion to what it has above its minimum.
        slack = [g - bounds.min_green_s for g in greens]
        total = sum(slack)
        greens = [g - excess * s / total if total > 0 else g for g, s in zip(greens, slack, strict=True)]
    return [round(g, 1) for g in greens]


class SignalController:
    """Runs one light: the advised plan within the device's bounds, or its own plan."""

    def __init__(self, sim: Any, tls: str, bounds: TrafficSettings) -> None:
        self.sim, self.tls, self.bounds = sim, tls, bounds
        self.layout = Layout.read(sim, tls)
        self.advised = False
        self.greens_s: list[float] = self.layout.own_greens_s

    def apply(self, advice: SignalAdvice) -> list[float]:
        """Install the advice as the light's running program (clamped to the bounds); return the greens."""
        if len(advice.greens_s) != len(self.layout.green):
            raise AdviceRejected(f"advice for {self.tls} has {len(advice.greens_s)} greens, the light has "
                                 f"{len(self.layout.green)}; the advisor must read the light's layout")
        greens = safe_greens(advice.greens_s, self.layout.intergreens_s, self.bounds)
        tl = self.sim.trafficlight
        phase, spent = tl.getPhase(self.tls), tl.getSpentDuration(self.tls)
        actuated = self.bounds.local_actuation
        phases = self._phases(greens, actuated)
        kind = TRAFFICLIGHT_TYPE_ACTUATED if actuated else TRAFFICLIGHT_TYPE_STATIC
        tl.setProgramLogic(self.tls, tl.Logic(ADVISED_PROGRAM, kind, phase, phases))
        tl.setProgram(self.tls, ADVISED_PROGRAM)
        tl.setPhase(self.tls, phase)
        if not actuated:
            # Switching programs restarts the phase; keep what it has already run so no green overruns.
            # (An actuated phase must not get a fixed duration: that would switch its gap-out off.)
            tl.setPhaseDuration(self.tls, max(phases[phase].duration - spent, 0.0))
        self.advised, self.greens_s = True, greens
        ADVICE_APPLIED.inc()
        ADVISED.labels(self.tls).set(1)
        return greens

    def _phases(self, greens: list[float], actuated: bool) -> list[Any]:
        """The light's own phases with the advised greens; the intergreens exactly as installed."""
        tl = self.sim.trafficlight
        phases = []
        for i, p in enumerate(self.layout.phases):
            if i in self.layout.green:
                dur = greens[self.layout.green.index(i)]
                # With local actuation the advised green is the phase's ceiling; the loops end it early
                # (gap-out) once its queue has cleared, as SCATS-style local controllers do.
                phases.append(tl.Phase(dur, p.state, self.bounds.min_green_s if actuated else dur, dur))
            else:
                phases.append(tl.Phase(p.duration, p.state, p.duration, p.duration))
        return phases

    def fall_back(self) -> None:
        """Return to the light's own stored plan."""
        tl = self.sim.trafficlight
        phase = tl.getPhase(self.tls)
        tl.setProgram(self.tls, self.layout.program)
        tl.setPhase(self.tls, phase)
        self.advised = False
        self.greens_s = self.layout.own_greens_s
        FALLBACKS.inc()
        ADVISED.labels(self.tls).set(0)
        log.warning("traffic_fallback", tls=self.tls, reason="no advice")
