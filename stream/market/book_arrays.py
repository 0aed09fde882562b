"""An interval's orders as arrays, placed on the grid, after each participant's own orders are netted.

A participant's bid and offer never trade with each other (a self-trade would pay fees to move energy
nowhere). Before the clearing, each participant's bids (highest first) are crossed with its own
offers (cheapest first) while the bid is at least the offer: that energy is self-supply, recorded as
`netted`, and only the rest enters the market. What remains can never match itself: an accepted bid
is at least its market's price, which is at least an accepted offer plus its fee, so a participant
whose remaining bid is below its remaining offer cannot have both accepted in one house market.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from citygrid.market import Order, Side
from citygrid.stream.market.grid import ROOT, MarketGrid


@dataclass(frozen=True)
class Book:
    """Orders sorted by id; arrays index the same way."""

    orders: list[Order]
    node: np.ndarray  # index into `nodes` of each order's market
    nodes: tuple[str, ...]  # node ids, in grid.bottom_up order
    is_bid: np.ndarray
    qty: np.ndarray  # Wh left for the market after netting
    limit: np.ndarray
    netted: dict[str, int]

    def at(self, node_index: int) -> np.ndarray:
        """Indices of the orders sitting in one market, in order-id order."""
        return self._groups.get(node_index, np.zeros(0, np.int64))

    @property
    def _groups(self) -> dict[int, np.ndarray]:
        cached = self.__dict__.get("_groups_cache")
        if cached is None:
            order = np.argsort(self.node, kind="stable")
            keys, starts = np.unique(self.node[order], return_index=True)
            bounds = [*starts[1:], len(order)] if len(order) else []
            cached = {int(k): order[s:e] for k, s, e in zip(keys, starts, bounds, strict=True)}
            self.__dict__["_groups_cache"] = cached
        return cached


def net_own_orders(orders: list[Order]) -> dict[str, int]:
    """Wh of each order its own participant's opposite orders supply (see the module docstring)."""
    sides: dict[str, tuple[list[Order], list[Order]]] = defaultdict(lambda: ([], []))
    for o in orders:
        sides[o.participant][0 if o.side is Side.BID else 1].append(o)
    netted: dict[str, int] = {}
    for bids, offers in sides.values():
        if not bids or not offers:
            continue
        bids.sort(key=lambda o: (-o.limit, o.order_id))
        offers.sort(key=lambda o: (o.limit, o.order_id))
        left = {o.order_id: o.wh for o in bids + offers}
        bi = oi = 0
        while bi < len(bids) and oi < len(offers) and bids[bi].limit >= offers[oi].limit:
            b, s = bids[bi], offers[oi]
            wh = min(left[b.order_id], left[s.order_id])
            for oid in (b.order_id, s.order_id):
                left[oid] -= wh
                netted[oid] = netted.get(oid, 0) + wh
            bi += not left[b.order_id]
            oi += not left[s.order_id]
    return netted


def place(orders: Iterable[Order], grid: MarketGrid, location: Mapping[str, str] | None) -> Book:
    """The book on the grid: each order in its participant's house market (the root of a flat grid)."""
    ordered = sorted(orders, key=lambda o: o.order_id)
    ids = [o.order_id for o in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("two orders share an order id: ids must be unique within an interval")
    nodes = grid.bottom_up
    index = {n: i for i, n in enumerate(nodes)}
    if len(nodes) == 1:
        node = np.full(len(ordered), index[ROOT], np.int64)
    else:
        if location is None:
            raise ValueError("a grid with more than one market needs each participant's bus")
        leaf = {p: index[grid.leaf(location[p])] for p in {o.participant for o in ordered}
                if p in location}
        missing = sorted({o.participant for o in ordered} - leaf.keys())
        if missing:
            raise KeyError(f"participants without a bus: {missing[:5]}: place them in the registry")
        node = np.array([leaf[o.participant] for o in ordered], np.int64)
    netted = net_own_orders(ordered)
    qty = np.array([o.wh - netted.get(o.order_id, 0) for o in ordered], np.int64)
    return Book(ordered, node, nodes, np.array([o.side is Side.BID for o in ordered], bool), qty,
                np.array([o.limit for o in ordered], np.int64), netted)
