"""Which green next, decided each second on the device: citygrid's pressure rule and a reference
max-pressure, both pure functions of what the sensors saw (testable without SUMO).

Max-pressure (Varaiya 2013) serves the phase whose movements have the most
vehicles waiting upstream minus those queued downstream; it is throughput-optimal
but, run on a fixed decision slot, it ends greens that are still discharging and
pays the intergreen more often than it must. citygrid keeps the pressure choice of
*which* phase, but decides *when* like an actuated controller: a green runs while
vehicles still cross its stop line (gap-out), never beyond its ceiling (the
device's max green, or a stream advice's lower ceiling), and a movement that has
waited max-red with a vehicle queued is served next whatever the pressures say.
A lane shared by several movements splits its queue among them, so a shared
through/left lane counts once, not once per phase.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from citygrid.edge.traffic.detectors import LaneState
from citygrid.edge.traffic.phases import Layout

REFERENCE_SLOT_S = 10.0  # the reference's decision slot, as RESCO's max-pressure agent uses (step 10 s)
# Vehicles arriving (moving in the approach zone) count half: they may still arrive on green.
ARRIVING_WEIGHT = 0.5


@dataclass(frozen=True)
class Bounds:
    """The safety bounds the rule keeps, whatever the pressures or an advice say."""

    min_green_s: float
    max_green_s: float
    max_red_s: float


def lane_shares(layout: Layout) -> dict[int, tuple[str, str, float, float]]:
    """signal index -> (in lane, out lane, share of the in lane's queue, share of the out lane's)."""
    per_in = Counter(m.in_lane for m in layout.movements)
    per_out = Counter(m.out_lane for m in layout.movements)
    shares: dict[int, tuple[str, str, float, float]] = {}
    for m in layout.movements:
        # Several links under one signal index: the index is the movement, the lanes add up.
        _, _, a, b = shares.get(m.index, ("", "", 0.0, 0.0))
        shares[m.index] = (m.in_lane, m.out_lane, a + 1.0 / per_in[m.in_lane], b + 1.0 / per_out[m.out_lane])
    return shares


def pressures(layout: Layout, shares: dict[int, tuple[str, str, float, float]],
              lanes: dict[str, LaneState]) -> list[float]:
    """citygrid's pressure per green: queued (and, half-weighted, arriving) vehicles it would serve, minus
    the downstream queue they would join; a movement whose outgoing lane is jammed serves nobody."""
    out = []
    for served in layout.serves:
        total = 0.0
        for idx in served:
            a, b, sa, sb = shares.get(idx, ("", "", 0.0, 0.0))
            up = lanes.get(a)
            if up is None:
                continue
            down = lanes.get(b)
            if down is not None and down.vehicles >= 0.9 * down.capacity:
                continue  # spillback: a green here would only block the junction
            w = up.halting + ARRIVING_WEIGHT * up.arriving
            total += sa * w - (sb * down.halting if down is not None else 0.0)
        out.append(total)
    return out


def demands(layout: Layout, shares: dict[int, tuple[str, str, float, float]],
            lanes: dict[str, LaneState]) -> list[float]:
    """Vehicles present on the movements of each green (upstream only): the demand the stream forecasts."""
    out = []
    for served in layout.serves:
        total = 0.0
        for idx in served:
            a, _, sa, _ = shares.get(idx, ("", "", 0.0, 0.0))
            if a in lanes:
                total += sa * (lanes[a].halting + lanes[a].arriving)
        out.append(total)
    return out


def in_use(layout: Layout, rank: int, lanes: dict[str, LaneState]) -> bool:
    """True while a vehicle moves through the stop zone of a lane this green serves (no gap yet)."""
    return any(lanes[m.in_lane].near_stop > 0 for m in layout.movements
               if m.index in layout.serves[rank] and m.in_lane in lanes)


def queue_clearance_s(layout: Layout, rank: int, lanes: dict[str, LaneState], headway_s: float) -> float:
    """Seconds green `rank` needs to discharge the longest queue it serves (one vehicle per headway)."""
    return headway_s * max((lanes[m.in_lane].halting for m in layout.movements
                            if m.index in layout.serves[rank] and m.in_lane in lanes), default=0.0)


def choose_citygrid(layout: Layout, lanes: dict[str, LaneState], current: int, elapsed_s: float,
                    red_for_s: dict[int, float], ceiling_s: float, bounds: Bounds,
                    shares: dict[int, tuple[str, str, float, float]], hold_s: float = 0.0) -> int:
    """The green to run from now: `current` to keep it, another rank to switch (after its intergreen).

    `hold_s`: the green the queue found at its start needs to clear; it is not ended before that
    (nor beyond its ceiling), so a queue whose head is slow to start cannot look like a gap."""
    if elapsed_s < bounds.min_green_s:
        return current
    p = pressures(layout, shares, lanes)
    waiting = {idx for idx, (a, _, _, _) in shares.items()
               if a in lanes and lanes[a].halting > 0 and idx not in layout.serves[current]}
    overdue = {idx for idx in waiting if red_for_s.get(idx, 0.0) >= bounds.max_red_s}
    if overdue:  # the safety bound comes before any efficiency rule
        candidates = [k for k, served in enumerate(layout.serves) if served & overdue]
        return max(candidates, key=lambda k: (len(layout.serves[k] & overdue), p[k]))
    if elapsed_s < min(hold_s, ceiling_s):
        return current
    # A vehicle about to arrive calls its green too, so it may find it green instead of stopping.
    waiting |= {idx for idx, (a, _, _, _) in shares.items()
                if a in lanes and lanes[a].arriving > 0 and idx not in layout.serves[current]}
    others = [k for k, served in enumerate(layout.serves) if k != current and served & waiting]
    if not others:
        return current
    best = max(others, key=lambda k: p[k])
    if elapsed_s >= ceiling_s or not in_use(layout, current, lanes):
        return best if p[best] > 0 else current
    return current


def reference_pressures(layout: Layout, lanes: dict[str, LaneState]) -> list[float]:
    """The textbook max-pressure per green: queued vehicles on its incoming lanes minus its outgoing ones."""
    out = []
    for served in layout.serves:
        ins = {m.in_lane for m in layout.movements if m.index in served}
        outs = {m.out_lane for m in layout.movements if m.index in served}
        out.append(sum(lanes[x].halting for x in ins if x in lanes)
                   - sum(lanes[x].halting for x in outs if x in lanes))
    return out


def choose_reference(layout: Layout, lanes: dict[str, LaneState], current: int, elapsed_s: float) -> int:
    """Max-pressure on a fixed slot: at the end of each slot the highest pressure wins (ties keep)."""
    if elapsed_s < REFERENCE_SLOT_S or elapsed_s % REFERENCE_SLOT_S >= 1.0:
        return current
    p = reference_pressures(layout, lanes)
    best = max(range(len(p)), key=lambda k: p[k])
    return best if p[best] > p[current] else current
