"""The light's layout, read from its own signal program: its green phases, the movements each serves,
and the intergreen (yellow, then all-red) the program itself puts after each green.

Everything the device knows about its junction comes from here, so the controller
needs no hand-written description of it and no per-network constant: a movement is
one controlled link (incoming lane → outgoing lane), a green phase serves every link
it shows green ('G' priority or 'g' permissive), so shared through/left lanes,
overlapping phases and short protected lefts are all read as they are, and a lane
belongs to every phase that serves one of its links (never to only one of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GREEN, YELLOW = "Gg", "yY"
# Signal states that are not lights the controller switches (stop/allway-stop signs, off): kept as is.
UNSWITCHED = "sOou"
DEFAULT_YELLOW_S = 3.0  # only when a program switches greens with no yellow at all (SUMO's own minimum)


@dataclass(frozen=True)
class Movement:
    """One controlled link: from an incoming lane to an outgoing lane, under one signal index."""

    index: int
    in_lane: str
    out_lane: str


@dataclass(frozen=True)
class Layout:
    """What the controller knows about its own light: phases, which are green, whom they serve."""

    tls: str
    program: str
    phases: tuple[Any, ...]  # TraCI phase objects of the light's own plan
    green: tuple[int, ...]  # phase indices that give a green, in program order
    movements: tuple[Movement, ...]
    serves: tuple[frozenset[int], ...]  # per green (rank): the signal indices it shows green
    yellow_s: tuple[float, ...]  # per green: the program's yellow after it
    red_s: tuple[float, ...]  # per green: the program's all-red after its yellow

    @property
    def in_lanes(self) -> tuple[str, ...]:
        """Incoming lanes of the light, each once."""
        return tuple(dict.fromkeys(m.in_lane for m in self.movements))

    @property
    def out_lanes(self) -> tuple[str, ...]:
        """Outgoing lanes of the light, each once."""
        return tuple(dict.fromkeys(m.out_lane for m in self.movements if m.out_lane))

    @property
    def intergreens_s(self) -> float:
        """Fixed yellow/all-red time of one cycle of the own plan; never changed by advice."""
        return sum(p.duration for i, p in enumerate(self.phases) if i not in self.green)

    @property
    def own_greens_s(self) -> list[float]:
        """The green durations of the light's own stored plan."""
        return [float(self.phases[g].duration) for g in self.green]

    @property
    def switchable(self) -> bool:
        """A light with fewer than two distinct greens has nothing to decide (e.g. a blinking signal)."""
        return len(set(self.serves)) >= 2

    def green_state(self, rank: int) -> str:
        """The signal state string of green `rank`, exactly as in the program."""
        return self.phases[self.green[rank]].state

    def transition(self, src: int, dst: int) -> list[tuple[str, float]]:
        """(state, seconds) from green `src` to green `dst`: the program's yellow, then its all-red.

        A link green in both stays green throughout (overlaps are not interrupted); a link losing its
        green shows yellow, then red; a link gaining green waits for the end of the intergreen.
        """
        a, b = self.green_state(src), self.green_state(dst)
        yellow, red = [], []
        for ca, cb in zip(a, b, strict=True):
            if cb in UNSWITCHED or ca in UNSWITCHED:
                yellow.append(cb)
                red.append(cb)
            elif ca in GREEN and cb in GREEN:
                yellow.append(ca)
                red.append(ca)
            elif ca in GREEN:
                yellow.append("y")
                red.append("r")
            else:
                yellow.append("r")
                red.append("r")
        steps = [("".join(yellow), self.yellow_s[src])]
        if self.red_s[src] > 0:
            steps.append(("".join(red), self.red_s[src]))
        return steps

    @classmethod
    def read(cls, sim: Any, tls: str) -> Layout:
        """Read the light's current (own) program and controlled links from the simulation."""
        program = sim.trafficlight.getProgram(tls)
        logics = sim.trafficlight.getAllProgramLogics(tls)
        logic = next((lg for lg in logics if lg.programID == program), logics[0])
        phases = tuple(logic.phases)
        links = sim.trafficlight.getControlledLinks(tls)
        movements = tuple(Movement(i, a, b) for i, group in enumerate(links) for a, b, _via in group)
        return cls.of(tls, program, phases, movements)

    @classmethod
    def of(cls, tls: str, program: str, phases: tuple[Any, ...], movements: tuple[Movement, ...]) -> Layout:
        """The layout of a program given its phases and controlled links (pure: testable without SUMO)."""
        green = tuple(i for i, p in enumerate(phases)
                      if not any(c in YELLOW for c in p.state) and any(c in GREEN for c in p.state))
        serves = tuple(frozenset(k for k, c in enumerate(phases[g].state) if c in GREEN) for g in green)
        yellows = [float(p.duration) for p in phases if any(c in YELLOW for c in p.state)]
        fallback_yellow = max(yellows, default=DEFAULT_YELLOW_S)
        yellow_s, red_s = [], []
        for g in green:
            y = r = 0.0
            k = (g + 1) % len(phases)
            while k not in green and k != g:
                if any(c in YELLOW for c in phases[k].state):
                    y += float(phases[k].duration)
                else:
                    r += float(phases[k].duration)
                k = (k + 1) % len(phases)
            yellow_s.append(y if y > 0 else fallback_yellow)
            red_s.append(r)
        return cls(tls, program, phases, green, movements, serves, tuple(yellow_s), tuple(red_s))
