"""The interval double auction: merit-order matching with a grid fee, priced pay-as-clear or pay-as-bid.

Bids are taken from the highest limit down and offers from the cheapest up; a
pair trades while the buyer's limit covers the seller's limit plus the grid
fee. This greedy walk maximises welfare (the sum of buyers' limits minus
sellers' limits minus fees over traded energy), which `reference.py` checks
against a linear program. Ties are broken by order id so a clearing is
reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from citygrid.market import Mechanism, Order, Side, Trade, trade_id


@dataclass(frozen=True)
class Clearing:
    """The outcome of one interval."""

    interval_start_ms: int
    mechanism: Mechanism
    trades: list[Trade]
    clearing_price: int | None  # the uniform price under pay-as-clear, None if nothing traded
    welfare: int

    @property
    def wh(self) -> int:
        """Energy traded."""
        return sum(t.wh for t in self.trades)


def _merit_order(orders: Iterable[Order]) -> tuple[list[Order], list[Order]]:
    bids = sorted((o for o in orders if o.side is Side.BID), key=lambda o: (-o.limit, o.order_id))
    offers = sorted((o for o in orders if o.side is Side.OFFER), key=lambda o: (o.limit, o.order_id))
    return bids, offers


def clear(orders: Iterable[Order], grid_fee: int, mechanism: Mechanism = Mechanism.PAY_AS_CLEAR,
          interval_start_ms: int = 0) -> Clearing:
    """Clear one interval's order book into trades."""
    if grid_fee < 0:
        raise ValueError("the grid fee cannot be negative")
    bids, offers = _merit_order(orders)
    matches: list[tuple[Order, Order, int]] = []
    bi = oi = 0
    left_bid = bids[0].wh if bids else 0
    left_offer = offers[0].wh if offers else 0
    while bi < len(bids) and oi < len(offers) and bids[bi].limit >= offers[oi].limit + grid_fee:
        wh = min(left_bid, left_offer)
        matches.append((bids[bi], offers[oi], wh))
        left_bid -= wh
        left_offer -= wh
        if not left_bid:
            bi += 1
            left_bid = bids[bi].wh if bi < len(bids) else 0
        if not left_offer:
            oi += 1
            left_offer = offers[oi].wh if oi < len(offers) else 0
    uniform = _uniform_price(matches, grid_fee) if mechanism is Mechanism.PAY_AS_CLEAR else None
    trades = [
        Trade(trade_id=trade_id(interval_start_ms, b.order_id, o.order_id),
              interval_start_ms=interval_start_ms, buyer=b.participant, seller=o.participant,
              bid_id=b.order_id, offer_id=o.order_id, wh=wh,
              price=uniform if uniform is not None else b.limit, grid_fee=grid_fee)
        for b, o, wh in matches
    ]
    welfare = sum((b.limit - o.limit - grid_fee) * wh for b, o, wh in matches)
    return Clearing(interval_start_ms, mechanism, trades, uniform, welfare)


def _uniform_price(matches: list[tuple[Order, Order, int]], grid_fee: int) -> int | None:
    # Any price between the marginal offer's cost (limit + fee) and the marginal bid's limit
    # clears every match; the midpoint (rounded down) splits the marginal surplus.
    if not matches:
        return None
    lowest_bid = matches[-1][0].limit
    highest_cost = max(o.limit for _, o, _ in matches) + grid_fee
    return (lowest_bid + highest_cost) // 2
