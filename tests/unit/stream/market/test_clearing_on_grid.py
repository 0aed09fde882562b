"""Clearing on a real SimBench grid (bus → feeder → substation → grid) with wire limits and fees per
level: random books and random placements, checked against the LP reference and the equilibrium
conditions, with capacities recomputed from the trades themselves."""

from __future__ import annotations

from collections import defaultdict
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygrid.clearing import FeeSchedule
from citygrid.market import Mechanism, Order, Side
from citygrid.stream.market.auction import Clearing, clear_on_grid
from citygrid.stream.market.grid import MarketGrid, Node
from citygrid.stream.market.prices import check_certificate
from citygrid.stream.market.reference import reference_clear_on_grid

CODE = "1-LV-rural1--0-sw"
FEES = FeeSchedule(constant={"house": 3, "feeder": 5, "substation": 7, "grid": 11})


@cache
def real_grid() -> MarketGrid:
    return MarketGrid.from_simbench(CODE)


@cache
def tight_grid() -> MarketGrid:
    """The same tree with every wire 500x weaker, so random books of a few kWh congest it."""
    g = real_grid()
    return MarketGrid(g.name, g.interval_s, tuple(
        Node(n.node_id, n.level, n.parent, None if n.capacity_wh is None else n.capacity_wh // 500)
        for n in g.nodes))


@st.composite
def books(draw: st.DrawFn) -> tuple[list[Order], dict[str, str]]:
    buses = real_grid().buses
    people = [f"p{i}" for i in range(draw(st.integers(1, 14)))]
    location = {p: draw(st.sampled_from(buses)) for p in people}
    rows = draw(st.lists(st.tuples(st.sampled_from(people), st.sampled_from(list(Side)),
                                   st.integers(1, 400), st.integers(0, 300)), max_size=50))
    return [Order(order_id=f"o{i:03d}", participant=p, side=s, wh=w, limit=lim)
            for i, (p, s, w, lim) in enumerate(rows)], location


def wire_flows(result: Clearing, grid: MarketGrid, location: dict[str, str]) -> dict[str, int]:
    """Net Wh over each node's wire to its parent, from the trades' own paths (not the certificate)."""
    flows: dict[str, int] = defaultdict(int)
    for t in result.trades:
        path = grid.path(grid.leaf(location[t.seller]), grid.leaf(location[t.buyer]))
        top = min(path, key=lambda n: len(grid.ancestors(n)))
        up, down = path[: path.index(top)], path[path.index(top) + 1:]
        for n in up:
            flows[n] += t.wh
        for n in down:
            flows[n] -= t.wh
    return flows


def check(orders: list[Order], location: dict[str, str], grid: MarketGrid, fees: FeeSchedule,
          mechanism: Mechanism) -> Clearing:
    result = clear_on_grid(orders, grid, location, fees, mechanism)
    by_id = {o.order_id: o for o in orders}
    for t in result.trades:
        bid, offer = by_id[t.bid_id], by_id[t.offer_id]
        assert t.buyer != t.seller, "self-trade"
        assert t.price <= bid.limit and t.price - t.grid_fee >= offer.limit
        assert all(isinstance(v, int) for v in (t.price, t.grid_fee, t.buyer_pays, t.seller_receives))
        path = grid.path(grid.leaf(location[t.seller]), grid.leaf(location[t.buyer]))
        levels = [grid.node(n).level for n in path]
        assert t.grid_fee >= sum(fees.c(lv) for lv in levels), "a trade paid less than its path's fees"
    for n, f in wire_flows(result, grid, location).items():
        cap = grid.node(n).capacity_wh
        assert cap is None or abs(f) <= cap, f"wire above {n} carries {f} Wh over its {cap}"
        assert f == result.certificate.flows[n]
    ref = reference_clear_on_grid(orders, grid, location, fees)
    assert result.welfare == pytest.approx(ref.welfare, rel=1e-9, abs=1e-6)
    assert check_certificate(result.certificate, orders, grid, location) == []
    return result


@settings(max_examples=120, deadline=None)
@given(book=books(), mechanism=st.sampled_from(list(Mechanism)), tight=st.booleans())
def test_random_books_on_a_real_grid_are_equilibria_and_optimal(book: tuple, mechanism: Mechanism,
                                                                 tight: bool) -> None:
    orders, location = book
    check(orders, location, tight_grid() if tight else real_grid(), FEES, mechanism)


def _o(oid: str, who: str, side: Side, wh: int, limit: int) -> Order:
    return Order(order_id=oid, participant=who, side=side, wh=wh, limit=limit)


def _two_feeders(grid: MarketGrid) -> tuple[list[str], list[str]]:
    feeders = [n.node_id for n in grid.nodes if n.level == "feeder" and len(grid.children[n.node_id]) >= 2]
    return [grid.children[f] for f in feeders[:2]]


def test_a_trade_inside_a_feeder_pays_fewer_levels_than_one_across_feeders() -> None:
    grid = real_grid()
    (a1, a2, *_), (b1, *_) = _two_feeders(grid)
    loc = {"seller": a1[4:], "near": a2[4:], "far": b1[4:]}
    for buyer, fee in (("near", 3 + 5 + 3), ("far", 3 + 5 + 7 + 5 + 3)):
        orders = [_o("s", "seller", Side.OFFER, 100, 10), _o("b", buyer, Side.BID, 100, 100)]
        (t,) = check(orders, loc, grid, FEES, Mechanism.PAY_AS_BID).trades
        assert (t.price, t.grid_fee) == (100, fee)


def test_a_full_feeder_wire_splits_prices_and_limits_the_trade() -> None:
    grid = tight_grid()
    (a1, *_), (b1, *_) = _two_feeders(grid)
    cap = grid.node(grid.node(a1).parent).capacity_wh
    loc = {"seller": a1[4:], "buyer": b1[4:]}
    orders = [_o("s", "seller", Side.OFFER, 10 * cap, 10), _o("b", "buyer", Side.BID, 10 * cap, 500)]
    result = check(orders, loc, grid, FEES, Mechanism.PAY_AS_CLEAR)
    assert result.wh == min(cap, grid.node(a1).capacity_wh, grid.node(b1).capacity_wh)
    prices = result.certificate.prices
    assert prices[b1] - prices[a1] > 3 + 5 + 7 + 5  # more than the fees: the full wire earns a rent


def test_clearing_is_deterministic_whatever_the_order_of_the_book() -> None:
    grid = tight_grid()
    buses = grid.buses
    location = {f"p{i}": buses[i % len(buses)] for i in range(30)}
    orders = [_o(f"o{i:03d}", f"p{i % 30}", Side.BID if i % 3 else Side.OFFER, 50 + (i * 71) % 300,
                 (i * 37) % 250) for i in range(200)]
    a = clear_on_grid(orders, grid, location, FEES, Mechanism.PAY_AS_CLEAR, 900_000)
    b = clear_on_grid(list(reversed(orders)), grid, location, FEES, Mechanism.PAY_AS_CLEAR, 900_000)
    assert a.trades and a.trades == b.trades and a.certificate == b.certificate


def test_a_participant_without_a_bus_is_refused() -> None:
    with pytest.raises(KeyError, match="without a bus"):
        clear_on_grid([_o("b", "ghost", Side.BID, 1, 1)], real_grid(), {}, FEES)
