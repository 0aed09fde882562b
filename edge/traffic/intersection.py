"""An intersection's edge agent: counts its approaches, publishes them signed, and runs the advised plan.

Each interval it reads its induction loops through TraCI/libsumo (the simulated
stand-in for a real controller's loop cards), publishes one signed reading with
the count of every approach lane (named `n.<green phase>.<lane>`, so the stream
side learns which lanes each green serves from the reading alone), and applies
the latest signal advice from its MQTT command topic. The safety bounds (minimum
and maximum greens, fixed yellows, maximum cycle) are enforced here, on the
device, whatever the advice says; when advice stops arriving for
`fallback_after` intervals the light returns to its own stored plan.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from citygrid.commands import SignalAdvice
from citygrid.edge.inference import Scorer
from citygrid.errors import AdviceRejected
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, sign_reading
from citygrid.settings import TrafficSettings
from citygrid.signing import DeviceKey
from citygrid.topics import commands_topic, readings_topic

log = structlog.get_logger(__name__)
ADVICE_APPLIED = Counter("citygrid_traffic_advice_applied_total", "Signal advice applied to a light")
ADVICE_REFUSED = Counter("citygrid_traffic_advice_refused_total", "Signal advice that could not be read")
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


@dataclass(frozen=True)
class Layout:
    """What the controller knows about its own light: phases, which are green, and whom they serve."""

    tls: str
    program: str
    phases: tuple[Any, ...]  # TraCI phase objects of the light's own plan
    green: tuple[int, ...]  # phase indices that give a green
    lanes: dict[str, int]  # incoming lane -> index into `green` of the phase serving it

    @property
    def intergreens_s(self) -> float:
        """Fixed yellow/all-red time per cycle; never changed by advice."""
        return sum(p.duration for i, p in enumerate(self.phases) if i not in self.green)

    @classmethod
    def read(cls, sim: Any, tls: str) -> Layout:
        """Read the light's current (own) program and controlled links from the simulation."""
        program = sim.trafficlight.getProgram(tls)
        logic = next(lg for lg in sim.trafficlight.getAllProgramLogics(tls) if lg.programID == program)
        phases = tuple(logic.phases)
        green = tuple(i for i, p in enumerate(phases)
                      if "y" not in p.state and any(c in "Gg" for c in p.state))
        lanes: dict[str, int] = {}
        for link_index, links in enumerate(sim.trafficlight.getControlledLinks(tls)):
            for in_lane, _out, _via in links:
                # A lane belongs to the phase where it has priority green ('G'), else any green.
                for rank, g in enumerate(green):
                    if phases[g].state[link_index] == "G" or (
                            phases[g].state[link_index] == "g" and in_lane not in lanes):
                        lanes[in_lane] = rank
        return cls(tls, program, phases, green, lanes)


class SignalController:
    """Runs one light: the advised plan within the device's bounds, or its own plan."""

    def __init__(self, sim: Any, tls: str, bounds: TrafficSettings) -> None:
        self.sim, self.tls, self.bounds = sim, tls, bounds
        self.layout = Layout.read(sim, tls)
        self.advised = False
        self.greens_s: list[float] = [self.layout.phases[g].duration for g in self.layout.green]

    def apply(self, advice: SignalAdvice) -> list[float]:
        """Install the advice as the light's running program (clamped to the bounds); return the greens."""
        if len(advice.greens_s) != len(self.layout.green):
            raise AdviceRejected(f"advice for {self.tls} has {len(advice.greens_s)} greens, the light has "
                                 f"{len(self.layout.green)}; the advisor must read the light's layout")
        greens = safe_greens(advice.greens_s, self.layout.intergreens_s, self.bounds)
        tl = self.sim.trafficlight
        phase, spent = tl.getPhase(self.tls), tl.getSpentDuration(self.tls)
        actuated = self.bounds.local_actuation
        phases = []
        for i, p in enumerate(self.layout.phases):
            if i in self.layout.green:
                dur = greens[self.layout.green.index(i)]
                # With local actuation the advised green is the phase's ceiling; the loops end it early
                # (gap-out) once its queue has cleared, as SCATS-style local controllers do.
                phases.append(tl.Phase(dur, p.state, self.bounds.min_green_s if actuated else dur, dur))
            else:
                phases.append(tl.Phase(p.duration, p.state, p.duration, p.duration))
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

    def fall_back(self) -> None:
        """Return to the light's own stored plan."""
        tl = self.sim.trafficlight
        phase = tl.getPhase(self.tls)
        tl.setProgram(self.tls, self.layout.program)
        tl.setPhase(self.tls, phase)
        self.advised = False
        self.greens_s = [self.layout.phases[g].duration for g in self.layout.green]
        FALLBACKS.inc()
        ADVISED.labels(self.tls).set(0)
        log.warning("traffic_fallback", tls=self.tls, reason="no advice")


def interval_counts(sim: Any, layout: Layout) -> dict[str, float]:
    """Vehicles each approach lane's loop counted in the last completed detector period."""
    values = {}
    for det in sim.inductionloop.getIDList():
        lane = sim.inductionloop.getLaneID(det)
        if lane in layout.lanes:
            count = sim.inductionloop.getLastIntervalVehicleNumber(det)
            values[f"n.{layout.lanes[lane]}.{lane}"] = float(count)
    return values


class IntersectionAgent:
    """One intersection device: a key, its light, its broker connection and its command topic."""

    def __init__(self, key: DeviceKey, controller: SignalController, publisher: Publisher,
                 commands_root: str, bounds: TrafficSettings, scorer: Scorer | None = None) -> None:
        self.key, self.controller, self.publisher, self.bounds = key, controller, publisher, bounds
        self.scorer = scorer
        self.seq = 0
        self.since_advice = 0
        self.received = 0
        self.applied: list[SignalAdvice] = []
        self._latest: SignalAdvice | None = None
        self._lock = threading.Lock()
        self.topic = readings_topic(publisher.settings.readings_topic, bounds.district, key.device_id)
        self.command_topic = commands_topic(commands_root, bounds.district, key.device_id)
        publisher.subscribe(self.command_topic, lambda msg: self.receive(msg.payload))

    def receive(self, payload: bytes) -> None:
        """Keep the newest advice for this light (called on the MQTT thread)."""
        try:
            advice = SignalAdvice.decode(payload)
        except AdviceRejected as exc:
            ADVICE_REFUSED.inc()
            log.warning("traffic_advice_refused", tls=self.controller.tls, error=str(exc))
            return
        if advice.device != self.key.device_id:
            ADVICE_REFUSED.inc()
            log.warning("traffic_advice_refused", tls=self.controller.tls,
                        error=f"advice is for {advice.device}")
            return
        with self._lock:
            self.received += 1
            if self._latest is None or advice.issued_ms > self._latest.issued_ms:
                self._latest = advice

    def tick(self, ts_ms: int) -> Reading:
        """One interval: publish the approach counts, then run the newest advice or fall back."""
        values = interval_counts(self.controller.sim, self.controller.layout)
        values["vehicles"] = sum(values.values())
        # Named to sort after the lane counts: the generic learner follows a device's first value.
        values["plan_advised"] = 1.0 if self.controller.advised else 0.0
        values["plan_intergreen_s"] = self.controller.layout.intergreens_s
        model = self.scorer.score(ts_ms, values) if self.scorer else None
        reading = Reading(device=self.key.device_id, seq=self.seq, ts_ms=ts_ms, kind="traffic",
                          values=values, model=model)
        self.seq += 1
        self.publisher.publish_async(self.topic, sign_reading(reading, self.key).encode())
        with self._lock:
            advice, self._latest = self._latest, None
        if advice is not None:
            try:
                self.controller.apply(advice)
                self.applied.append(advice)
                self.since_advice = 0
            except AdviceRejected as exc:
                ADVICE_REFUSED.inc()
                log.warning("traffic_advice_refused", tls=self.controller.tls, error=str(exc))
        else:
            self.since_advice += 1
            if self.controller.advised and self.since_advice >= self.bounds.fallback_after:
                self.controller.fall_back()
        return reading
