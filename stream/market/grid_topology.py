"""Reading a pandapower net's wires into the market tree's nodes (the rules are in `grid.py`'s docstring).

Closed switches join buses, open ones separate them (pandapower's own topology graph does this), so a
meshed-but-switched-open SimBench grid reads as the radial feeders it is operated as.
"""

from __future__ import annotations

import math
from collections import deque

import networkx as nx

from citygrid.stream.market.grid import ROOT, Node, wh_per_interval

UPSTREAM = "upstream"  # the branch holding buses above every substation (the MV grid's own buses)


def _line_mw(net: object, idx: int) -> float:
    row = net.line.loc[idx]
    parallel = int(row.get("parallel", 1) or 1)
    return math.sqrt(3) * float(net.bus.at[row.from_bus, "vn_kv"]) * float(row.max_i_ka) * parallel


def _graph(net: object) -> nx.MultiGraph:
    import pandapower.topology as top

    return top.create_nxgraph(net, include_trafos=False, respect_switches=True, multi=True)


def _substations(net: object) -> list[tuple[str, int, float]]:
    """(name, LV bus, sn_mva) of each in-service transformer stepping into the lowest voltage level."""
    trafo = net.trafo[net.trafo.in_service.astype(bool)]
    if trafo.empty:
        raise ValueError("the grid has no transformer: there is no substation to build markets under")
    lv_kv = net.bus.loc[trafo.lv_bus, "vn_kv"].to_numpy()
    lowest = lv_kv.min()
    out = []
    for (idx, row), kv in zip(trafo.iterrows(), lv_kv, strict=True):
        if kv == lowest:
            label = str(row.get("name") or idx).replace(" ", "_")
            out.append((f"sub:{label}", int(row.lv_bus), float(row.sn_mva)))
    return sorted(out)


def _busbar(g: nx.MultiGraph, bus: int) -> set[int]:
    # The transformer's LV bus and every bus joined to it by a closed switch (no line in between).
    seen, queue = {bus}, deque([bus])
    while queue:
        b = queue.popleft()
        for _, other, key in g.edges(b, keys=True):
            if key[0] == "switch" and other not in seen:
                seen.add(other)
                queue.append(other)
    return seen


def _feeder_nodes(net: object, g: nx.MultiGraph, sub: str, busbar: set[int], interval_s: int,
                  taken: set[int]) -> list[Node]:
    nodes = [Node(f"feeder:{sub[4:]}:busbar", "feeder", sub, None)]
    nodes += [Node(f"bus:{b}", "house", nodes[0].node_id, None) for b in sorted(busbar)]
    taken |= busbar
    heads: dict[int, list[int]] = {}
    for b in sorted(busbar):
        for _, other, key in g.edges(b, keys=True):
            if key[0] == "line" and other not in busbar:
                heads.setdefault(int(other), []).append(int(key[1]))
    k = 0
    for head in sorted(heads):
        if head in taken:
            continue  # reached already through an earlier head: one feeder, several lines into it
        k += 1
        feeder = f"feeder:{sub[4:]}:{k}"
        houses, lines = _walk(net, g, head, busbar, taken)
        head_lines = [ln for h, lns in heads.items() if h in houses for ln in lns]
        cap = wh_per_interval(sum(_line_mw(net, ln) for ln in head_lines), interval_s)
        nodes.append(Node(feeder, "feeder", sub, cap))
        for b in sorted(houses):
            mw = _line_mw(net, lines[b]) if b in lines else None
            nodes.append(Node(f"bus:{b}", "house", feeder, wh_per_interval(mw, interval_s) if mw else None))
    return nodes


def _walk(net: object, g: nx.MultiGraph, head: int, busbar: set[int],
          taken: set[int]) -> tuple[set[int], dict]:
    """Buses of the feeder starting at `head`, and the line that first reached each (its service line)."""
    seen, lines, queue = {head}, {}, deque([head])
    for _, other, key in g.edges(head, keys=True):
        if other in busbar and key[0] == "line":
            lines[head] = int(key[1])
    while queue:
        b = queue.popleft()
        for _, other, key in sorted(g.edges(b, keys=True), key=lambda e: (int(e[1]), str(e[2]))):
            if other in busbar or other in seen or other in taken:
                continue
            seen.add(other)
            if key[0] == "line":
                lines[int(other)] = int(key[1])
            queue.append(other)
    taken |= seen
    return seen, lines


def grid_nodes(net: object, interval_s: int) -> list[Node]:
    """Root, substations, feeders and houses of `net` (see `grid.py`)."""
    g = _graph(net)
    nodes = [Node(ROOT, "grid", None, None)]
    taken: set[int] = set()
    for sub, lv_bus, sn_mva in _substations(net):
        nodes.append(Node(sub, "substation", ROOT, wh_per_interval(sn_mva, interval_s)))
        nodes += _feeder_nodes(net, g, sub, _busbar(g, lv_bus), interval_s, taken)
    rest = sorted(int(b) for b in net.bus.index if int(b) not in taken)
    if rest:
        sub, feeder = f"sub:{UPSTREAM}", f"feeder:{UPSTREAM}"
        nodes += [Node(sub, "substation", ROOT, None), Node(feeder, "feeder", sub, None)]
        nodes += [Node(f"bus:{b}", "house", feeder, None) for b in rest]
    return nodes
