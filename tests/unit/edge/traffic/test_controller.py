"""The intersection's controller without SUMO: its layout read from the light's own program, advice
kept within the device's bounds whatever it says, the light taken over where it stands and handed back
to its own program on fallback, and its reading naming demand per green."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citygrid.commands import AdviceRejected, SignalAdvice
from citygrid.edge.traffic.controller import ADVISED_PROGRAM, SignalController, safe_greens
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

    program: str = "0"
    phase: int = 0
    state: str = "GGrr"
    logics: dict[str, Logic] = field(default_factory=lambda: {"0": Logic("0", 0, 0, [
        Phase(30, "GGrr"), Phase(3, "yyrr"), Phase(20, "rrGG"), Phase(3, "rryy")])})

    def getProgram(self, tls: str) -> str:
        return self.program

    def getAllProgramLogics(self, tls: str) -> list[Logic]:
        return list(self.logics.values())

    def getControlledLinks(self, tls: str) -> list[list[tuple[str, str, str]]]:
        return [[(lane, f"out_{lane}", "via")] for lane in ("n_0", "s_0", "e_0", "w_0")]

    def getPhase(self, tls: str) -> int:
        return self.phase

    def getSpentDuration(self, tls: str) -> float:
        return 0.0

    def getNextSwitch(self, tls: str) -> float:
        return 2.0

    def getRedYellowGreenState(self, tls: str) -> str:
        return self.state

    def setRedYellowGreenState(self, tls: str, state: str) -> None:
        self.program, self.state = ADVISED_PROGRAM, state

    def setProgram(self, tls: str, program: str) -> None:
        self.program = program

    def setPhase(self, tls: str, index: int) -> None:
        self.phase = index
        self.state = self.logics[self.program].phases[index].state


@dataclass
class FakeLanes:
    """Lane readings by lane id (the same surface for the lane and the lane-area domains)."""

    halting: dict[str, int] = field(default_factory=dict)
    moving: dict[str, int] = field(default_factory=dict)

    def getIDList(self) -> list[str]:
        return []  # no detectors installed: the controller reads the lanes themselves

    def getLength(self, lane: str) -> float:
        return 150.0

    def getParameter(self, det: str, key: str) -> str:
        return ""

    def getLastStepHaltingNumber(self, lane: str) -> int:
        return self.halting.get(lane, 0)

    def getLastStepVehicleNumber(self, lane: str) -> int:
        return self.halting.get(lane, 0) + self.moving.get(lane, 0)


@dataclass
class FakeClock:
    now: float = 0.0

    def getTime(self) -> float:
        return self.now


@dataclass
class FakeSim:
    trafficlight: FakeLight = field(default_factory=FakeLight)
    lane: FakeLanes = field(default_factory=FakeLanes)
    lanearea: FakeLanes = field(default_factory=FakeLanes)
    simulation: FakeClock = field(default_factory=FakeClock)


@given(st.lists(st.floats(-100, 1000, allow_nan=False), min_size=2, max_size=4))
def test_safe_greens_keep_every_bound_whatever_the_advice(advised: list[float]) -> None:
    greens = safe_greens(advised, B)
    assert len(greens) == len(advised)
    assert all(B.min_green_s - 0.05 <= g <= B.max_green_s + 0.05 for g in greens)


def test_layout_comes_from_the_lights_own_program() -> None:
    light = SignalController(FakeSim(), "j1", B)
    layout = light.layout
    assert layout.green == (0, 2) and layout.intergreens_s == 6.0
    assert layout.serves == (frozenset({0, 1}), frozenset({2, 3}))
    assert layout.in_lanes == ("n_0", "s_0", "e_0", "w_0")
    assert layout.yellow_s == (3.0, 3.0) and layout.red_s == (0.0, 0.0)


def test_reading_names_the_demand_of_each_green_and_the_plan() -> None:
    sim = FakeSim()
    sim.lane.halting, sim.lane.moving = {"n_0": 4, "e_0": 1}, {"s_0": 2}
    light = SignalController(sim, "j1", B)
    light.step(1.0)
    values = light.reading_values()
    assert values == {"d.0": 6.0, "d.1": 1.0, "plan_phases": 2.0, "plan_intergreen_s": 6.0,
                      "plan_advised": 0.0}
    assert light.reading_values()["d.0"] == 0.0  # each reading covers its own interval


def test_advice_engages_the_light_within_bounds_and_fallback_restores_its_own_program() -> None:
    sim = FakeSim()
    light = SignalController(sim, "j1", B)
    assert sim.trafficlight.program == "0" and not light.engaged  # not advised: its own program runs
    assert light.apply(SignalAdvice("d", (500.0, 1.0), 60.0, T0)) == [B.max_green_s, B.min_green_s]
    assert light.advised and light.engaged and sim.trafficlight.program == ADVISED_PROGRAM
    assert sim.trafficlight.state == "GGrr"  # taken over where it stood, mid-green
    light.fall_back()
    assert not light.advised and sim.trafficlight.program == "0" and sim.trafficlight.phase == 0


def test_advice_for_another_layout_is_refused() -> None:
    light = SignalController(FakeSim(), "j1", B)
    with pytest.raises(AdviceRejected, match="the light has 2"):
        light.apply(SignalAdvice("d", (10.0, 10.0, 10.0), 40.0, T0))
    assert not light.advised and light.sim.trafficlight.program == "0"


def test_an_autonomous_light_switches_to_a_queue_after_min_green_and_the_programs_yellow() -> None:
    sim = FakeSim()
    light = SignalController(sim, "j1", B, autonomous=True)
    sim.lane.halting = {"e_0": 3}  # a queue on the red approach, nobody on the green one
    states = []
    for t in range(1, 15):
        sim.simulation.now = float(t)
        light.step(float(t))
        states.append(sim.trafficlight.state)
    first_yellow = states.index("yyrr")
    assert first_yellow + 1 >= B.min_green_s  # the green ran its minimum
    assert states[first_yellow:first_yellow + 3] == ["yyrr"] * 3  # the program's own 3 s yellow
    assert states[first_yellow + 3] == "rrGG"
