"""Where the light's detectors go, from the lane graph alone: a queue zone longer than its lane goes on
over the lanes before it (sharing a lane that also leads elsewhere), never past another light; an exit
zone goes on after a short outgoing lane, sharing a split; approach and stop zones stay on the lane."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from citygrid.edge.traffic.detectors import APPROACH_ZONE_M, QUEUE_ZONE_M, LaneGraph, placements
from citygrid.edge.traffic.phases import Layout, Movement


@dataclass(frozen=True)
class Phase:
    duration: float
    state: str


LAYOUT = Layout.of("j", "0", (Phase(30, "Gr"), Phase(3, "yr"), Phase(30, "rG"), Phase(3, "ry")),
                   (Movement(0, "a_0", "o_0"), Movement(1, "z_0", "w_0")))
# a_0 is a 9 m last lane before the stop line; b_0 feeds only a_0, m_0 feeds a_0 and x_0, s_0 feeds m_0;
# u_0 ends at another light (it is that light's approach). o_0 is a 9 m exit that splits to p_0 and q_0.
GRAPH = LaneGraph(
    length={"a_0": 9.0, "b_0": 73.0, "m_0": 17.0, "s_0": 300.0, "u_0": 100.0, "x_0": 50.0, "z_0": 400.0,
            "o_0": 9.0, "p_0": 300.0, "q_0": 300.0, "w_0": 400.0},
    succ={"b_0": ("a_0",), "m_0": ("a_0", "x_0"), "s_0": ("m_0",), "u_0": ("b_0",), "o_0": ("p_0", "q_0")},
    pred={"a_0": ("b_0", "m_0"), "m_0": ("s_0",), "b_0": ("u_0",), "p_0": ("o_0",), "q_0": ("o_0",)},
    signalised=frozenset({"a_0", "z_0", "u_0"}),
)


def _zone(zone: str, lane: str) -> dict[str, tuple[float, float, float]]:
    base = f"cg|{zone}|{lane}"
    return {p.lane: (p.start, p.end, p.weight) for p in placements(LAYOUT, GRAPH)
            if p.id == base or p.id.startswith(base + "|")}


def test_a_queue_zone_goes_on_over_the_lanes_before_a_short_last_lane() -> None:
    q = _zone("queue", "a_0")
    assert q["a_0"] == (0.0, 9.0, 1.0)
    assert q["b_0"] == (0.0, 73.0, 1.0)  # all of b_0's traffic is bound for a_0
    assert q["m_0"] == (0.0, 17.0, 0.5)  # m_0 leads to two lanes: half its queue is a_0's
    # s_0 is covered only as far as the zone reaches (200 m from the stop line), at m_0's share.
    start, end, weight = q["s_0"]
    assert end == 300.0 and start == pytest.approx(300.0 - (QUEUE_ZONE_M - 9.0 - 17.0))
    assert weight == 0.5
    assert "u_0" not in q  # a queue there waits at another light
    # A long lane holds its zone by itself.
    assert _zone("queue", "z_0") == {"z_0": (400.0 - QUEUE_ZONE_M, 400.0, 1.0)}


def test_approach_and_stop_zones_stay_on_the_lane_and_exits_go_on_after_a_short_one() -> None:
    assert _zone("approach", "a_0") == {"a_0": (0.0, 9.0, 1.0)}
    assert _zone("approach", "z_0") == {"z_0": (400.0 - APPROACH_ZONE_M, 400.0, 1.0)}
    assert _zone("stop", "a_0") == {"a_0": (0.0, 9.0, 1.0)}
    exit_ = _zone("exit", "o_0")
    assert exit_["o_0"] == (0.0, 9.0, 1.0)
    assert exit_["p_0"] == exit_["q_0"] == (0.0, QUEUE_ZONE_M - 9.0, 0.5)
    assert _zone("exit", "w_0") == {"w_0": (0.0, QUEUE_ZONE_M, 1.0)}
