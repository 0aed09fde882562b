"""The market hierarchy of a real distribution grid: bus (house) → LV feeder → MV/LV substation → MV grid.

Grid Singularity's exchange (gsy-e) nests markets the way the wires nest (house, street, grid) and
charges a fee in every market a trade passes through; the wires themselves limit how much energy can
cross between markets. `MarketGrid` is that tree, built from a SimBench grid's own topology so no
constant belongs to one grid:

- substations are the transformers that step down into the grid's lowest voltage level (MV/LV for LV
  and MV+LV codes, HV/MV for an MV-only code); the edge substation → grid carries the transformer's
  rating (sn_mva);
- a feeder is one connected piece of that low-voltage network once the substation's busbar (the
  transformer's LV bus and the buses switched onto it) is taken out; the edge feeder → substation
  carries the lines leaving the busbar into it (√3 · vn_kv · max_i_ka · parallel);
- a house is a bus; its edge to the feeder carries the line that reaches it from the busbar side
  (unlimited when it hangs on a switch). Buses on the busbar form the substation's "busbar" feeder,
  and buses above the substations (the MV grid itself) hang under an unlimited "upstream" branch,
  so every bus sits at the same depth and pays the same kinds of levels.

Lines inside a feeder other than a bus's own service line, and the MV lines between substations, are
not modelled: the market sees the grid as the tree of its markets, as gsy-e does. Capacities are
energy per market interval: power x interval, in whole Wh (rounded down, so the limit is never
overstated).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

ROOT = "grid"


@dataclass(frozen=True)
class Node:
    """One market of the hierarchy and the wire that joins it to its parent market."""

    node_id: str
    level: str
    parent: str | None
    capacity_wh: int | None  # energy the edge to the parent carries per interval, either way; None: unlimited


@dataclass(frozen=True)
class MarketGrid:
    """A tree of markets; leaves are buses (`bus:<pandapower bus index>`) where participants sit."""

    name: str
    interval_s: int
    nodes: tuple[Node, ...]
    _by_id: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {n.node_id: n for n in self.nodes}
        if len(by_id) != len(self.nodes) or ROOT not in by_id or by_id[ROOT].parent is not None:
            raise ValueError("a market grid needs unique node ids and one root named 'grid'")
        for n in self.nodes:
            if n.parent is not None and n.parent not in by_id:
                raise ValueError(f"node {n.node_id} names an unknown parent {n.parent}")
            if n.capacity_wh is not None and n.capacity_wh < 0:
                raise ValueError(f"node {n.node_id} has a negative capacity")
        object.__setattr__(self, "_by_id", by_id)

    def node(self, node_id: str) -> Node:
        """A node by id (KeyError if the grid has none)."""
        return self._by_id[node_id]

    def leaf(self, bus: str) -> str:
        """The house market of a bus id as the participants registry stores it (e.g. "7" or "bus:7")."""
        node_id = bus if bus.startswith("bus:") else f"bus:{bus}"
        if node_id not in self._by_id or self._by_id[node_id].level != "house":
            raise KeyError(f"bus {bus!r} is not a bus of grid {self.name}")
        return node_id

    @cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        """Each node's children, sorted by id so every walk of the tree is reproducible."""
        kids: dict[str, list[str]] = {n.node_id: [] for n in self.nodes}
        for n in self.nodes:
            if n.parent is not None:
                kids[n.parent].append(n.node_id)
        return {k: tuple(sorted(v)) for k, v in kids.items()}

    @cached_property
    def bottom_up(self) -> tuple[str, ...]:
        """Every node, children before parents (reverse breadth-first from the root)."""
        order, queue = [], deque([ROOT])
        while queue:
            n = queue.popleft()
            order.append(n)
            queue.extend(self.children[n])
        return tuple(reversed(order))

    @cached_property
    def buses(self) -> tuple[str, ...]:
        """Every house market (bus), sorted."""
        return tuple(sorted(n.node_id for n in self.nodes if n.level == "house"))

    def ancestors(self, node_id: str) -> list[str]:
        """The node itself, then each market above it up to the root."""
        out = [node_id]
        while (parent := self._by_id[out[-1]].parent) is not None:
            out.append(parent)
        return out

    def path(self, seller: str, buyer: str) -> list[str]:
        """Markets a trade from `seller`'s node to `buyer`'s passes through, each once, seller side first."""
        up = self.ancestors(seller)
        down = self.ancestors(buyer)
        common = set(up) & set(down)
        top = next(n for n in up if n in common)
        return up[: up.index(top) + 1] + list(reversed(down[: down.index(top)]))

    @classmethod
    def flat(cls, interval_s: int = 900) -> MarketGrid:
        """One market, no limits: the single-level exchange the flat `clear` call has always meant."""
        return cls("flat", interval_s, (Node(ROOT, "grid", None, None),))

    @classmethod
    def from_simbench(cls, code: str, interval_s: int = 900) -> MarketGrid:
        """The market tree of a SimBench grid (e.g. "1-LV-rural1--0-sw", "1-MVLV-rural-1.108-0-sw")."""
        import simbench

        return from_net(simbench.get_simbench_net(code), code, interval_s)


def wh_per_interval(power_mw: float, interval_s: int) -> int | None:
    """Energy a wire rated `power_mw` carries in one interval, whole Wh rounded down (None if unrated)."""
    if power_mw is None or not math.isfinite(power_mw) or power_mw < 0:
        return None
    return int(power_mw * 1e6 * interval_s / 3600)


def from_net(net: object, name: str, interval_s: int = 900) -> MarketGrid:
    """The market tree of any pandapower net with step-down transformers (see the module docstring)."""
    from citygrid.stream.market.grid_topology import grid_nodes

    return MarketGrid(name, interval_s, tuple(grid_nodes(net, interval_s)))


def placement(grid: MarketGrid, location: Mapping[str, str], participants: Iterable[str]) -> dict[str, str]:
    """Each participant's house market; KeyError naming the first participant placed nowhere or off-grid."""
    out = {}
    for p in participants:
        if p not in location:
            raise KeyError(f"participant {p!r} has no bus: place it in the participants registry")
        out[p] = grid.leaf(location[p])
    return out
