"""The intersection's controller without SUMO: its layout read from the light's own program, advice
kept within the device's bounds whatever it says, and the fallback to the light's own plan."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citygrid.commands import AdviceRejected, SignalAdvice
from citygrid.edge.traffic.controller import ADVISED_PROGRAM, SignalController, safe_greens
from citygrid.edge.traffic.detectors import interval_counts
from citygrid.settings import TrafficSettings

B = TrafficSettings()
T0 = 1_767_225_600_000


@dataclass
class Phase:
    duration: float
    state: str
    minDur: float = -1  # TraCI's own field names
    maxDur: float = -1


@dataclass
class Logic:
    programID: str
    type: int
    currentPhaseIndex: int
    phases: list[Phase]


@dataclass
class FakeLight:
    """The part of TraCI's trafficlight domain the controller uses, for one two-phase light."""

    Phase = Phase
    Logic = Logic
    program: str = "0"
    phase: int = 0
    phase_duration: float | None = None
    logics: dict[str, Logic] = field(default_factory=lambda: {"0": Logic("0", 0, 0, [
        Phase(30, "GGrr"), Phase(3, "yyrr"), Phase(20, "rrGG"), Phase(3, "rryy")])})

    def getProgram(self, tls: str) -> str:
        return self.program

    def getAllProgramLogics(self, tls: str) -> list[Logic]:
        return list(self.logics.values())

    def getControlledLinks(self, tls: str) -> list[list[tuple[str, str, str]]]:
        return [[(lane, "out", "via")] for lane in ("n_0", "s_0", "e_0", "w_0")]

    def getPhase(self, tls: str) -> int:
        return self.phase

    def getSpentDuration(self, tls: str) -> float:
        return 4.0

    def setProgramLogic(self, tls: str, logic: Logic) -> None:
        self.logics[logic.programID] = logic

    def setProgram(self, tls: str, program: str) -> None:
        self.program = program

    def setPhase(self, tls: str, index: int) -> None:
        self.phase = index

    def setPhaseDuration(self, tls: str, duration: float) -> None:
        self.phase_duration = duration


@dataclass
class FakeLoops:
    """Three induction loops: two on the light's approaches, one elsewhere."""

    lanes: dict[str, str] = field(default_factory=lambda: {"d_n": "n_0", "d_e": "e_0", "d_other": "x_0"})
    counts: dict[str, int] = field(default_factory=lambda: {"d_n": 7, "d_e": 2, "d_other": 9})

    def getIDList(self) -> list[str]:
        return list(self.lanes)

    def getLaneID(self, det: str) -> str:
        return self.lanes[det]

    def getLastIntervalVehicleNumber(self, det: str) -> int:
        return self.counts[det]


@dataclass
class FakeSim:
    trafficlight: FakeLight = field(default_factory=FakeLight)
    inductionloop: FakeLoops = field(default_factory=FakeLoops)


@given(st.lists(st.floats(-100, 1000, allow_nan=False), min_size=2, max_size=4))
def test_safe_greens_keep_every_bound_whatever_the_advice(advised: list[float]) -> None:
    greens = safe_greens(advised, 6.0, B)
    assert all(B.min_green_s - 0.05 <= g <= B.max_green_s + 0.05 for g in greens)
    assert sum(greens) + 6.0 <= B.max_cycle_s + 0.05 * len(greens)


def test_layout_and_counts_come_from_the_lights_own_program() -> None:
    light = SignalController(FakeSim(), "j1", B)
    assert light.layout.green == (0, 2) and light.layout.intergreens_s == 6.0
    assert light.layout.lanes == {"n_0": 0, "s_0": 0, "e_0": 1, "w_0": 1}
    # Only the loops on the light's approaches count, named by the green that serves them.
    assert interval_counts(light.sim, light.layout) == {"n.0.n_0": 7.0, "n.1.e_0": 2.0}


def test_advice_runs_within_bounds_with_the_lights_own_intergreens() -> None:
    light = SignalController(FakeSim(), "j1", B)
    assert light.apply(SignalAdvice("d", (500.0, 1.0), 60.0, T0)) == [B.max_green_s, B.min_green_s]
    tl = light.sim.trafficlight
    assert tl.program == ADVISED_PROGRAM and light.advised
    phases = tl.logics[ADVISED_PROGRAM].phases
    # The advised green is each phase's ceiling; local actuation may end it from min_green_s on.
    assert [(p.minDur, p.maxDur) for p in phases[::2]] == [(B.min_green_s, B.max_green_s),
                                                           (B.min_green_s, B.min_green_s)]
    assert [p.duration for p in phases[1::2]] == [3, 3]
    assert tl.phase_duration is None  # an actuated phase keeps its gap-out


def test_fixed_advice_keeps_what_the_running_phase_already_spent() -> None:
    light = SignalController(FakeSim(), "j1", B.model_copy(update={"local_actuation": False}))
    light.apply(SignalAdvice("d", (40.0, 20.0), 66.0, T0))
    assert light.sim.trafficlight.phase_duration == 40.0 - 4.0


def test_advice_for_another_layout_is_refused_and_fallback_restores_the_own_plan() -> None:
    light = SignalController(FakeSim(), "j1", B)
    with pytest.raises(AdviceRejected, match="the light has 2"):
        light.apply(SignalAdvice("d", (10.0, 10.0, 10.0), 40.0, T0))
    assert light.sim.trafficlight.program == "0" and not light.advised
    light.apply(SignalAdvice("d", (20.0, 20.0), 46.0, T0))
    light.fall_back()
    assert light.sim.trafficlight.program == "0" and not light.advised
    assert light.greens_s == [30, 20]
