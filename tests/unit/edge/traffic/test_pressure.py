"""The layout and decision rules as pure functions: movements read from a real-city program (shared
through/left lanes, protected lefts, overlaps), the intergreens it implies, and the choice of green."""

from __future__ import annotations

from dataclasses import dataclass

from citygrid.edge.traffic.detectors import LaneState
from citygrid.edge.traffic.phases import Layout, Movement
from citygrid.edge.traffic.pressure import (
    Bounds,
    choose_citygrid,
    choose_reference,
    lane_shares,
    pressures,
    reference_pressures,
)


@dataclass
class P:
    duration: float
    state: str


# RESCO cologne1's program (sumo_rl/nets/RESCO/cologne1): through + permissive left on shared lanes,
# then a 6 s protected left, for each road; 5 s yellows. Ten signals per road, two roads.
COLOGNE = (P(29, "rrrrrGGGggrrrrrGGGgg"), P(5, "rrrrryyyggrrrrryyygg"), P(6, "rrrrrrrrGGrrrrrrrrGG"),
           P(5, "rrrrrrrryyrrrrrrrryy"), P(29, "GGGggrrrrrGGGggrrrrr"), P(5, "yyyggrrrrryyyggrrrrr"),
           P(6, "rrrGGrrrrrrrrGGrrrrr"), P(5, "rrryyrrrrrrrryyrrrrr"))
# Lanes (made up, but typical): per approach of five signals, the first two leave from lane _0, the
# other three from lane _1, a through lane shared with the left turn.
APPROACHES = ("a", "b", "c", "d")
MOVES = tuple(Movement(i, f"{APPROACHES[i // 5]}_{0 if i % 5 < 2 else 1}", f"out{i % 5}_{i // 5}")
              for i in range(20))
B = Bounds(min_green_s=5.0, max_green_s=60.0, max_red_s=120.0)


def layout() -> Layout:
    return Layout.of("j", "0", COLOGNE, MOVES)


def test_each_green_serves_every_link_it_shows_green_so_a_main_phase_is_never_empty() -> None:
    lay = layout()
    assert lay.green == (0, 2, 4, 6)
    assert lay.serves[0] == frozenset({5, 6, 7, 8, 9, 15, 16, 17, 18, 19})  # through and permissive left
    assert lay.serves[1] == frozenset({8, 9, 18, 19})  # the protected left overlaps it
    assert lay.yellow_s == (5.0, 5.0, 5.0, 5.0) and lay.red_s == (0.0, 0.0, 0.0, 0.0)
    assert set(lay.in_lanes) == {"a_0", "a_1", "b_0", "b_1", "c_0", "c_1", "d_0", "d_1"}


def test_overlapping_links_stay_green_through_the_intergreen_and_the_others_get_yellow() -> None:
    lay = layout()
    (yellow, seconds), = lay.transition(0, 1)  # main green -> its protected left: the lefts continue
    assert seconds == 5.0
    assert yellow == "rrrrryyyggrrrrryyygg"
    (yellow, _), = lay.transition(1, 2)
    assert yellow == "rrrrrrrryyrrrrrrrryy"


def test_a_shared_lane_splits_its_queue_among_its_movements() -> None:
    lay = layout()
    shares = lane_shares(lay)
    # Lane b_1 carries signals 7, 8 and 9: a third of its queue each.
    assert shares[7][2] == shares[8][2] == shares[9][2] == 1 / 3
    lanes = {ln: LaneState() for ln in (*lay.in_lanes, *lay.out_lanes)}
    lanes["b_1"] = LaneState(halting=6)
    p = pressures(lay, shares, lanes)
    assert p[0] == 6.0 and p[1] == 4.0  # the main green serves all of it, the protected left two thirds


def test_min_green_then_gap_out_to_the_queue_and_max_red_overrides_everything() -> None:
    lay = layout()
    shares = lane_shares(lay)
    lanes = {ln: LaneState() for ln in (*lay.in_lanes, *lay.out_lanes)}
    lanes["a_0"] = LaneState(halting=4)  # signals 0-1: served by green rank 2 only
    assert choose_citygrid(lay, lanes, 0, 3.0, {}, 60.0, B, shares) == 0  # min green
    assert choose_citygrid(lay, lanes, 0, 6.0, {}, 60.0, B, shares) == 2  # no one uses green 0: gap-out
    lanes["b_0"] = LaneState(near_stop=1.0)  # green 0 is being used
    assert choose_citygrid(lay, lanes, 0, 6.0, {}, 60.0, B, shares) == 0
    assert choose_citygrid(lay, lanes, 0, 60.0, {}, 60.0, B, shares) == 2  # its ceiling
    # A queue waiting beyond max red is served next whatever else holds the green.
    assert choose_citygrid(lay, lanes, 0, 6.0, {0: 121.0}, 60.0, B, shares, hold_s=50.0) == 2


def test_reference_max_pressure_decides_on_its_slot_only() -> None:
    lay = layout()
    lanes = {ln: LaneState() for ln in (*lay.in_lanes, *lay.out_lanes)}
    lanes["a_0"] = LaneState(halting=4)
    assert reference_pressures(lay, lanes)[2] == 4.0
    assert choose_reference(lay, lanes, 0, 5.0) == 0
    assert choose_reference(lay, lanes, 0, 10.0) == 2
    assert choose_reference(lay, lanes, 0, 13.0) == 0
