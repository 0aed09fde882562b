"""The light's phase layout, read from its own signal program: which phases give a green and which
incoming lanes each green serves.

Everything the device knows about its light comes from here, so the controller
never needs a hand-written description of the junction: the signal program
the light was installed with is the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    @property
    def own_greens_s(self) -> list[float]:
        """The green durations of the light's own stored plan."""
        return [self.phases[g].duration for g in self.green]

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
