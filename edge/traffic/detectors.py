"""Sensing the approaches: queues and presence per lane from lane-area detectors (E2: camera or radar
zones), so demand is what waits and arrives, not what a loop saw discharge during the green it got.

The detectors follow one naming rule, `cg|<zone>|<lane>`: `queue` zones cover up to
QUEUE_ZONE_M before the stop line of each incoming lane (its queue), `approach`
zones its last APPROACH_ZONE_M (vehicles about to arrive), `stop` zones its last
STOP_ZONE_M (a vehicle there is about to use the green: the gap detector), and
`exit` zones the first QUEUE_ZONE_M of each outgoing lane (its queue, and whether
it has spilled back to the junction); a lane between two lights has both ends
equipped. A queue or exit zone longer than its lane goes on over the lanes before
(or after) it, up to the next light, so a short last lane before the stop line
still shows the whole queue; approach and stop zones stay on the lane itself,
since a vehicle moving before an unsignalised junction may yet yield there.
Where a zone's detector is missing (a network nobody equipped) the sensor reads
the lane itself over TraCI, which is what a detector covering the whole lane
would report; `placements` says where detectors belong, so a scenario can
install them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from citygrid.edge.traffic.phases import Layout

QUEUE_ZONE_M = 200.0  # a camera/radar zone: long enough for most queues, short enough to be one sensor
# Moving vehicles count as arriving demand only this close to the stop line (~7 s at urban speed):
# further out they may still arrive on the next green, and calling a green for them wastes one.
APPROACH_ZONE_M = 100.0
STOP_ZONE_M = 30.0  # ~2 s of travel at urban speed: a vehicle here will cross within the gap time
ZONES = ("queue", "approach", "stop")  # per incoming lane, each ending at the stop line
SPANNING = ("queue",)  # the approach zones that go on over the lanes before a short last lane
MIN_SEGMENT_M = 1.0  # a zone goes on over a further lane only for at least this much of it (no slivers)


def detector_id(zone: str, lane: str, segment: str | None = None) -> str:
    """The id of citygrid's detector of `zone` (one of ZONES, or 'exit') on `lane`; a zone that reaches
    past its own lane has one more detector per further lane, `segment`."""
    return f"cg|{zone}|{lane}" + (f"|{segment}" if segment else "")


@dataclass(frozen=True)
class LaneGraph:
    """What placement needs of the road network: lane lengths and how lanes connect across junctions."""

    length: dict[str, float]
    succ: dict[str, tuple[str, ...]]  # lane -> the lanes its connections lead to
    pred: dict[str, tuple[str, ...]]  # lane -> the lanes whose connections lead to it
    signalised: frozenset[str]  # lanes that end at a traffic light's stop line


@dataclass(frozen=True)
class Placement:
    """One detector: its id, lane and stretch, and the share of its vehicles counted for its zone."""

    id: str
    lane: str
    start: float
    end: float
    weight: float


def _upstream(graph: LaneGraph, lane: str, reach: float, weight: float,
              seen: set[str]) -> list[tuple[str, float, float, float]]:
    """(lane, start, end, weight) of the stretches within `reach` before `lane`'s end, across junctions
    that are not signalised (a queue there waits at another light, not this one). A lane that leads to
    several lanes counts for this one by the share of its lanes that it is."""
    n = graph.length[lane]
    out = [(lane, max(0.0, n - reach), n, weight)]
    rest = reach - n
    if rest < MIN_SEGMENT_M:
        return out
    for p in graph.pred.get(lane, ()):
        if p in seen or p.startswith(":") or p not in graph.length or p in graph.signalised:
            continue
        seen.add(p)
        out += _upstream(graph, p, rest, weight / max(len(graph.succ.get(p, ())), 1), seen)
    return out


def _downstream(graph: LaneGraph, lane: str, reach: float, weight: float,
                seen: set[str]) -> list[tuple[str, float, float, float]]:
    """(lane, start, end, weight) of the stretches within `reach` after `lane`'s start, up to the next
    light's stop line; a lane that splits shares its traffic equally among its next lanes."""
    n = graph.length[lane]
    out = [(lane, 0.0, min(n, reach), weight)]
    rest = reach - n
    nxt = [s for s in graph.succ.get(lane, ()) if not s.startswith(":") and s in graph.length]
    if rest < MIN_SEGMENT_M or lane in graph.signalised:
        return out
    for s in nxt:
        if s not in seen:
            seen.add(s)
            out += _downstream(graph, s, rest, weight / len(nxt), seen)
    return out


def placements(layout: Layout, graph: LaneGraph) -> list[Placement]:
    """Every detector this light wants (internal lanes excluded).

    Each zone covers its full reach whatever the network's lane splits: a zone longer than its lane
    goes on over the lanes before it (an approach) or after it (an exit), so an approach whose last
    lane is a few metres long still shows its whole queue, and one vehicle there is no spillback."""
    out = []
    reach = {"queue": QUEUE_ZONE_M, "approach": APPROACH_ZONE_M, "stop": STOP_ZONE_M}
    for lane in layout.in_lanes:
        if lane.startswith(":") or lane not in graph.length:
            continue
        for z in ZONES:
            span = _upstream(graph, lane, reach[z], 1.0, {lane}) if z in SPANNING else [
                (lane, max(0.0, graph.length[lane] - reach[z]), graph.length[lane], 1.0)]
            out += [Placement(detector_id(z, lane, None if seg == lane else seg), seg, start, end, w)
                    for seg, start, end, w in span if seg == lane or end - start >= MIN_SEGMENT_M]
    for lane in layout.out_lanes:
        if lane.startswith(":") or lane not in graph.length:
            continue
        out += [Placement(detector_id("exit", lane, None if seg == lane else seg), seg, start, end, w)
                for seg, start, end, w in _downstream(graph, lane, QUEUE_ZONE_M, 1.0, {lane})
                if seg == lane or end - start >= MIN_SEGMENT_M]
    return out


@dataclass
class LaneState:
    """What one lane's zones report this second."""

    halting: float = 0.0  # queued vehicles in the queue (or exit) zone
    arriving: float = 0.0  # moving vehicles in the approach zone
    near_stop: float = 0.0  # moving vehicles in the stop zone: the green is being used
    vehicles: float = 0.0  # every vehicle in the queue (or exit) zone
    capacity: float = 1.0  # vehicles the queue (or exit) zone holds when jammed


class ApproachSensors:
    """Reads every lane of one light each second: its own detectors, or the lane where it has none.

    A zone may be several detectors (one per lane it spans), each counted by its `weight` parameter:
    what a camera or radar covering the whole zone would report of the vehicles bound for this lane."""

    JAM_SPACING_M = 7.5  # vehicle length plus standstill gap of a passenger car

    def __init__(self, sim: Any, layout: Layout) -> None:
        self.sim = sim
        have = sorted(sim.lanearea.getIDList())
        self.in_lanes = layout.in_lanes
        self.lanes = tuple(dict.fromkeys((*layout.in_lanes, *layout.out_lanes)))
        # An approach is read at its stop-line end, an exit at its junction end (a lane that is both
        # for this one light, a loop, is read as an approach).
        zone = {ln: "exit" for ln in layout.out_lanes} | {ln: "queue" for ln in layout.in_lanes}
        self.zone = zone
        self.det: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for ln in self.lanes:
            for z in (zone[ln], "approach", "stop"):
                base = detector_id(z, ln)
                ids = [d for d in have if d == base or d.startswith(base + "|")]
                if base in ids:  # a zone without its own lane's detector is not a zone
                    self.det[(z, ln)] = [(d, self._weight(d)) for d in ids]
        self.capacity = {}
        for ln in self.lanes:
            group = self.det.get((zone[ln], ln))
            length = (sum(w * sim.lanearea.getLength(d) for d, w in group) if group
                      else sim.lane.getLength(ln))
            self.capacity[ln] = max(1.0, length / self.JAM_SPACING_M)

    def _weight(self, det: str) -> float:
        raw = self.sim.lanearea.getParameter(det, "weight")
        return float(raw) if raw else 1.0

    def _count(self, zone: str, lane: str) -> tuple[float, float]:
        """(vehicles, halting) in the zone: its detectors weighted, or the whole lane if it has none."""
        group = self.det.get((zone, lane))
        if group is None:
            api = self.sim.lane
            return float(api.getLastStepVehicleNumber(lane)), float(api.getLastStepHaltingNumber(lane))
        e2 = self.sim.lanearea
        return (sum(w * e2.getLastStepVehicleNumber(d) for d, w in group),
                sum(w * e2.getLastStepHaltingNumber(d) for d, w in group))

    def read(self) -> dict[str, LaneState]:
        """This second's state of every lane."""
        out = {}
        for ln in self.lanes:
            vehicles, halting = self._count(self.zone[ln], ln)
            state = LaneState(halting, 0.0, 0.0, vehicles, self.capacity[ln])
            if self.zone[ln] == "queue":
                n, h = self._count("approach", ln)
                state.arriving = n - h
                n, h = self._count("stop", ln)
                state.near_stop = n - h
            out[ln] = state
        return out
