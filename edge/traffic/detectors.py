"""Sensing the approaches: queues and presence per lane from lane-area detectors (E2: camera or radar
zones), so demand is what waits and arrives, not what a loop saw discharge during the green it got.

The detectors follow one naming rule, `cg|<zone>|<lane>`: `queue` zones cover up to
QUEUE_ZONE_M before the stop line of each incoming lane (its queue), `approach`
zones its last APPROACH_ZONE_M (vehicles about to arrive), `stop` zones its last
STOP_ZONE_M (a vehicle there is about to use the green: the gap detector), and
`exit` zones the first QUEUE_ZONE_M of each outgoing lane (its queue, and whether
it has spilled back to the junction); a lane between two lights has both ends
equipped. Where a zone's detector is missing (a network nobody equipped) the
sensor reads the lane itself over TraCI, which is what a detector covering the
whole lane would report; `placements` says where
detectors belong, so a scenario can install them.
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


def detector_id(zone: str, lane: str) -> str:
    """The id of citygrid's detector of `zone` (one of ZONES, or 'exit') on `lane`."""
    return f"cg|{zone}|{lane}"


def placements(layout: Layout, lane_length: dict[str, float]) -> list[tuple[str, str, float, float]]:
    """(detector id, lane, start, end) of every detector this light wants (internal lanes excluded)."""
    out = []
    reach = {"queue": QUEUE_ZONE_M, "approach": APPROACH_ZONE_M, "stop": STOP_ZONE_M}
    for lane in layout.in_lanes:
        if lane.startswith(":") or lane not in lane_length:
            continue
        n = lane_length[lane]
        out += [(detector_id(z, lane), lane, max(0.0, n - reach[z]), n) for z in ZONES]
    for lane in layout.out_lanes:
        if lane.startswith(":") or lane not in lane_length:
            continue
        out.append((detector_id("exit", lane), lane, 0.0, min(lane_length[lane], QUEUE_ZONE_M)))
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
    """Reads every lane of one light each second: its own detectors, or the lane where it has none."""

    JAM_SPACING_M = 7.5  # vehicle length plus standstill gap of a passenger car

    def __init__(self, sim: Any, layout: Layout) -> None:
        self.sim = sim
        have = set(sim.lanearea.getIDList())
        self.in_lanes = layout.in_lanes
        self.lanes = tuple(dict.fromkeys((*layout.in_lanes, *layout.out_lanes)))
        # An approach is read at its stop-line end, an exit at its junction end (a lane that is both
        # for this one light, a loop, is read as an approach).
        zone = {ln: "exit" for ln in layout.out_lanes} | {ln: "queue" for ln in layout.in_lanes}
        self.det = {(z, ln): detector_id(z, ln) for ln in self.lanes for z in (zone[ln], "approach", "stop")}
        self.det = {k: d for k, d in self.det.items() if d in have}
        self.zone = zone
        self.capacity = {}
        for ln in self.lanes:
            d = self.det.get((zone[ln], ln))
            length = sim.lanearea.getLength(d) if d else sim.lane.getLength(ln)
            self.capacity[ln] = max(1.0, length / self.JAM_SPACING_M)

    def _moving(self, zone: str, lane: str) -> float:
        d = self.det.get((zone, lane))
        if d is None:  # no detector: the whole lane stands in for the zone
            api, key = self.sim.lane, lane
        else:
            api, key = self.sim.lanearea, d
        return float(api.getLastStepVehicleNumber(key) - api.getLastStepHaltingNumber(key))

    def read(self) -> dict[str, LaneState]:
        """This second's state of every lane."""
        e2, lane_api = self.sim.lanearea, self.sim.lane
        out = {}
        for ln in self.lanes:
            d = self.det.get((self.zone[ln], ln))
            if d is not None:
                halting, vehicles = e2.getLastStepHaltingNumber(d), e2.getLastStepVehicleNumber(d)
            else:
                halting = lane_api.getLastStepHaltingNumber(ln)
                vehicles = lane_api.getLastStepVehicleNumber(ln)
            state = LaneState(float(halting), 0.0, 0.0, float(vehicles), self.capacity[ln])
            if self.zone[ln] == "queue":
                state.arriving = self._moving("approach", ln)
                state.near_stop = self._moving("stop", ln)
            out[ln] = state
        return out
