"""The market tree read from SimBench grids: levels, feeders and wire capacities from the grid data."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from citygrid.stream.market.grid import MarketGrid


@pytest.fixture(scope="module")
def rural() -> MarketGrid:
    return MarketGrid.from_simbench("1-LV-rural1--0-sw", interval_s=900)


def test_every_bus_is_a_house_at_the_same_depth(rural: MarketGrid) -> None:
    import simbench

    net = simbench.get_simbench_net("1-LV-rural1--0-sw")
    assert len(rural.buses) == len(net.bus)
    assert {len(rural.ancestors(b)) for b in rural.buses} == {4}
    assert Counter(rural.node(rural.node(b).parent).level for b in rural.buses) == {"feeder": len(net.bus)}


def test_feeders_are_the_lines_leaving_the_transformer_with_their_capacity(rural: MarketGrid) -> None:
    # rural1: one 160 kVA MV/LV transformer and four 0.27 kA, 0.4 kV feeder cables.
    sub = [n for n in rural.nodes if n.level == "substation" and n.capacity_wh is not None]
    assert [s.capacity_wh for s in sub] == [int(0.16e6 * 900 / 3600)]
    feeders = [n for n in rural.nodes if n.level == "feeder" and n.capacity_wh is not None]
    assert len(feeders) == 4
    assert {f.capacity_wh for f in feeders} == {int(math.sqrt(3) * 0.4 * 0.27 * 1e6 * 900 / 3600)}


def test_paths_and_the_flat_market(rural: MarketGrid) -> None:
    b = rural.buses
    path = rural.path(b[0], b[0])
    assert path == [b[0]]
    assert MarketGrid.flat().bottom_up == ("grid",)


def test_an_mv_lv_grid_puts_mv_buses_upstream_and_lv_buses_under_their_substation() -> None:
    grid = MarketGrid.from_simbench("1-MVLV-rural-1.108-0-sw")
    levels = Counter(n.level for n in grid.nodes)
    assert levels["house"] == 111 and levels["substation"] >= 2
    upstream = [b for b in grid.buses if "upstream" in grid.node(b).parent]
    assert upstream and len(upstream) < len(grid.buses)
