"""Competitive equilibrium on the market tree with constant fees and wire limits: a step-curve merge.

Our own method (the curve arithmetic is in `curves.py`):
1. bottom-up, each market's net-supply curve is its own orders' curve plus what each child market
   would export to it at each price — the child's curve shifted by the fee energy pays to cross
   (up: the parent market's fee; down: the child's own) and clipped to the wire's capacity;
2. at the top market, the price is the midpoint of the interval where net supply can be zero;
3. top-down, each market splits what it must send its parent among its own orders and its
   children (own orders first, then children by id, each from the low end of its range), and each
   child takes the price its flow implies (see `citygrid.clearing` for the rule);
4. in each market, orders priced in the money trade fully, marginal ones (exactly at the price)
   fill in order-id order, the rest not at all.

The result satisfies the LP's optimality conditions (checked by `prices.check_certificate` and
against `reference.py`), so it maximises welfare, and it is exact in integers throughout: limits,
fees and capacities are integers, so every breakpoint and price is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from citygrid.clearing import FeeSchedule
from citygrid.stream.market.book_arrays import Book
from citygrid.stream.market.curves import INF, Curve, add, export_curve
from citygrid.stream.market.grid import ROOT, MarketGrid


@dataclass(frozen=True)
class Equilibrium:
    """Prices, flows and accepted Wh of one interval on one grid."""

    prices: dict[str, int]
    flows: dict[str, int]  # node → Wh sent to its parent
    accepted: np.ndarray  # Wh per order of the book


def entry_costs(book: Book, grid: MarketGrid, fees: FeeSchedule) -> np.ndarray:
    """Each order's limit in its own market: an offer adds that market's constant fee (it enters it)."""
    levels = np.array([fees.c(grid.node(n).level) for n in book.nodes], np.int64)
    return book.limit + np.where(book.is_bid, 0, levels[book.node])


def _own_curve(book: Book, eff: np.ndarray, i: int) -> Curve:
    idx = book.at(i)
    if not len(idx):
        return Curve.zero()
    bid = book.is_bid[idx]
    return Curve.of_orders(eff[idx][~bid], book.qty[idx][~bid], eff[idx][bid], book.qty[idx][bid])


def _edge(grid: MarketGrid, fees: FeeSchedule, n: str) -> tuple[int, int, int]:
    node = grid.node(n)
    cap = INF if node.capacity_wh is None else node.capacity_wh
    return fees.c(grid.node(node.parent).level), fees.c(node.level), cap


def solve(book: Book, grid: MarketGrid, fees: FeeSchedule) -> Equilibrium | None:
    """The interval's equilibrium; None if the book is empty."""
    eff = entry_costs(book, grid, fees)
    own, inside, export = {}, {}, {}
    for i, n in enumerate(book.nodes):  # children before parents
        own[n] = _own_curve(book, eff, i)
        inside[n] = add([own[n]] + [export[c] for c in grid.children[n]])
        if n != ROOT:
            export[n] = export_curve(inside[n], *_edge(grid, fees, n))
    if not len(inside[ROOT].x):
        return None
    prices = {ROOT: _choose(*inside[ROOT].zeros(0), None)}
    flows: dict[str, int] = {}
    targets = {ROOT: 0}
    own_target = {}
    for n in reversed(book.nodes):  # parents before children
        parts = [own[n]] + [export[c] for c in grid.children[n]]
        shares = _split(targets[n], [p.at(prices[n]) for p in parts])
        own_target[n] = shares[0]
        for c, f in zip(grid.children[n], shares[1:], strict=True):
            flows[c] = targets[c] = f
            prices[c] = _child_price(inside[c], f, prices[n], *_edge(grid, fees, c))
    accepted = np.zeros(len(book.orders), np.int64)
    for i, n in enumerate(book.nodes):
        _allocate(book, eff, i, prices[n], own_target[n], accepted)
    return Equilibrium(prices, flows, accepted)


def _split(target: int, ranges: list[tuple[int, int]]) -> list[int]:
    shares = [lo for lo, _ in ranges]
    rest = target - sum(shares)
    for k, (lo, hi) in enumerate(ranges):
        take = min(rest, hi - lo)
        shares[k] += take
        rest -= take
    if rest:
        raise AssertionError(f"a market cannot send {target} Wh at its price: the curves disagree")
    return shares


def _choose(lo: int | None, hi: int | None, fallback: int | None) -> int | None:
    if lo is not None and hi is not None:
        if lo > hi:
            raise AssertionError(f"empty price interval [{lo}, {hi}]")
        return (lo + hi) // 2
    return lo if lo is not None else hi if hi is not None else fallback


def _child_price(inside: Curve, flow: int, parent: int, up: int, down: int, cap: int) -> int:
    lo, hi = inside.zeros(flow)
    if cap == 0:
        edge = (None, None)
    elif 0 < flow < cap:
        edge = (parent - up, parent - up)
    elif flow > 0:
        edge = (None, parent - up)  # the wire is full: the child's price may sit further below
    elif -cap < flow < 0:
        edge = (parent + down, parent + down)
    elif flow < 0:
        edge = (parent + down, None)
    else:
        edge = (parent - up, parent + down)
    lows = [v for v in (lo, edge[0]) if v is not None]
    highs = [v for v in (hi, edge[1]) if v is not None]
    return _choose(max(lows) if lows else None, min(highs) if highs else None, parent)


def _allocate(book: Book, eff: np.ndarray, i: int, price: int, target: int, out: np.ndarray) -> None:
    idx = book.at(i)
    if not len(idx):
        return
    bid, e, q = book.is_bid[idx], eff[idx], book.qty[idx]
    strict = np.where(bid, e > price, e < price)
    out[idx[strict]] = q[strict]
    sold = int(q[strict & ~bid].sum()) - int(q[strict & bid].sum())
    rest = target - sold  # marginal offers (> 0) or marginal bids (< 0) still to fill
    marginal = idx[(e == price) & (bid if rest < 0 else ~bid)]
    rest = abs(rest)
    for k in marginal:  # order-id order
        take = min(rest, int(book.qty[k]))
        out[k] = take
        rest -= take
    if rest:
        raise AssertionError("marginal orders cannot fill their market's share")
