"""The interval double auction on the grid's market tree, priced pay-as-clear or pay-as-bid.

`clear_on_grid` places each participant's orders in its bus's house market, nets each participant's
own crossing orders (no self-trades), finds the competitive equilibrium that respects every wire's
capacity and charges gsy-e's fee in every market a trade passes through (`equilibrium.py`; with
percentage fees, the LP in `reference.py`), pairs buyers with sellers in the lowest market they can
meet (`pairing.py`) and prices each pair:

- pay-as-clear: the buyer pays its house market's price; the seller receives its own house market's
  price less the fee of that market (which its offer entered); the difference is the path's fees
  plus any congestion rent of full wires, all of it the grid operator's. With percentage fees the
  buyer pays the matching market's price plus what its bid gave up on the way, and the revenue is
  gsy-e's split of that rate (`fees.split`).
- pay-as-bid: the buyer pays its bid, the seller receives gsy-e's split of it (bid - constant fees,
  ÷ (1 + percentages)).

`clear(orders, grid_fee, …)` is the flat exchange (one market, one constant fee, no wires) the market
worker has always called; it runs through the same engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from citygrid.clearing import FeeSchedule, PriceCertificate
from citygrid.market import Mechanism, Order, Trade, trade_id
from citygrid.participants import Participants
from citygrid.settings import MarketSettings
from citygrid.stream.market.book_arrays import Book, place
from citygrid.stream.market.equilibrium import Equilibrium, solve
from citygrid.stream.market.fees import split
from citygrid.stream.market.grid import ROOT, MarketGrid
from citygrid.stream.market.pairing import Pair, pair_up


@dataclass(frozen=True)
class Clearing:
    """The outcome of one interval."""

    interval_start_ms: int
    mechanism: Mechanism
    trades: list[Trade]
    clearing_price: int | None  # pay-as-clear: the top market's price (the flat market's only one)
    welfare: int
    certificate: PriceCertificate | None = None

    @property
    def wh(self) -> int:
        """Energy traded."""
        return sum(t.wh for t in self.trades)


@dataclass(frozen=True)
class MarketPlan:
    """Where and at what fees an interval clears: the market tree, each participant's bus, the fees.

    Every worker and every auditor builds the same plan from the same settings and participants
    registry, so clearing a book again anywhere gives the same trades, prices and certificate.
    """

    grid: MarketGrid
    fees: FeeSchedule
    location: Mapping[str, str] | None  # participant → bus; None on the flat market

    @classmethod
    def from_settings(cls, m: MarketSettings, participants: Participants) -> MarketPlan:
        """The plan `m` describes: the SimBench grid `m.grid_code` with its per-level fees and the
        registry's buses, or (no grid code) one flat market charging `m.grid_fee`."""
        if not m.grid_code:
            return cls(MarketGrid.flat(m.interval_s), FeeSchedule(constant={"grid": m.grid_fee}), None)
        fees = FeeSchedule(constant=dict(m.fees_constant), percent_bp=dict(m.fees_percent_bp))
        location = {name: participants.get(name).bus for name in participants if participants.get(name).bus}
        return cls(_simbench_grid(m.grid_code, m.interval_s), fees, location)

    def clear(self, orders: Iterable[Order], mechanism: Mechanism, interval_start_ms: int) -> Clearing:
        """Clear one interval's book under this plan."""
        return clear_on_grid(orders, self.grid, self.location, self.fees, mechanism, interval_start_ms)


@lru_cache(maxsize=4)
def _simbench_grid(code: str, interval_s: int) -> MarketGrid:
    return MarketGrid.from_simbench(code, interval_s)  # seconds to load: once per process


def clear(orders: Iterable[Order], grid_fee: int, mechanism: Mechanism = Mechanism.PAY_AS_CLEAR,
          interval_start_ms: int = 0) -> Clearing:
    """Clear one interval's book in a single market with a flat fee per Wh (the worker's call)."""
    if grid_fee < 0:
        raise ValueError("the grid fee cannot be negative")
    return clear_on_grid(orders, MarketGrid.flat(), None, FeeSchedule(constant={"grid": grid_fee}),
                         mechanism, interval_start_ms)


def clear_on_grid(orders: Iterable[Order], grid: MarketGrid, location: Mapping[str, str] | None,
                  fees: FeeSchedule, mechanism: Mechanism = Mechanism.PAY_AS_CLEAR,
                  interval_start_ms: int = 0) -> Clearing:
    """Clear one interval's book on `grid`, participants at the buses `location` names (participant → bus)."""
    book = place(orders, grid, location)
    if fees.has_percentage:
        from citygrid.stream.market.reference import lp_equilibrium

        eq, assignments = lp_equilibrium(book, grid, fees)
    else:
        eq, assignments = solve(book, grid, fees), None
    if eq is None:
        return Clearing(interval_start_ms, mechanism, [], None, 0,
                        _certificate(book, grid, fees, mechanism, interval_start_ms, None, 0))
    pairs = pair_up(book, grid, eq.accepted, assignments)
    money = _Money(book, grid, fees, eq, mechanism)
    trades, welfare = [], 0
    for p in pairs:
        b, o = book.orders[p.bid], book.orders[p.offer]
        price, fee = money.rates(p)
        trades.append(Trade(trade_id=trade_id(interval_start_ms, b.order_id, o.order_id),
                            interval_start_ms=interval_start_ms, buyer=b.participant, seller=o.participant,
                            bid_id=b.order_id, offer_id=o.order_id, wh=p.wh, price=price, grid_fee=fee))
        welfare += p.wh * (b.limit - o.limit - money.path_constant(p))
    uniform = eq.prices[ROOT] if mechanism is Mechanism.PAY_AS_CLEAR and trades else None
    return Clearing(interval_start_ms, mechanism, trades, uniform, welfare,
                    _certificate(book, grid, fees, mechanism, interval_start_ms, eq, welfare))


class _Money:
    """Per-Wh rates of a pair: what the buyer pays and the part of it that is grid fee."""

    def __init__(self, book: Book, grid: MarketGrid, fees: FeeSchedule, eq: Equilibrium,
                 mechanism: Mechanism) -> None:
        self.book, self.grid, self.fees, self.eq, self.mechanism = book, grid, fees, eq, mechanism

    def levels(self, p: Pair) -> list[str]:
        """Levels of the markets on the pair's path, seller side first."""
        b, o = self.book.nodes[self.book.node[p.bid]], self.book.nodes[self.book.node[p.offer]]
        return [self.grid.node(n).level for n in self.grid.path(o, b)]

    def path_constant(self, p: Pair) -> int:
        """Σ constant fees over the pair's path."""
        return sum(self.fees.c(lv) for lv in self.levels(p))

    def rates(self, p: Pair) -> tuple[int, int]:
        """(buyer's rate, grid fee rate), planck/Wh."""
        bid = int(self.book.limit[p.bid])
        if self.mechanism is Mechanism.PAY_AS_BID:
            revenue, _ = split(self.fees, self.levels(p), bid)
            return bid, bid - revenue
        if not self.fees.has_percentage:
            buyer = self.eq.prices[self.book.nodes[self.book.node[p.bid]]]
            seller_node = self.book.nodes[self.book.node[p.offer]]
            seller = self.eq.prices[seller_node] - self.fees.c(self.grid.node(seller_node).level)
            return buyer, buyer - seller
        from citygrid.stream.market.reference import bid_loss

        lost = bid_loss(self.book, self.grid, self.fees, p.bid, p.market)
        buyer = min(bid, self.eq.prices[p.market] + lost)
        revenue, _ = split(self.fees, self.levels(p), buyer)
        return buyer, buyer - revenue


def _certificate(book: Book, grid: MarketGrid, fees: FeeSchedule, mechanism: Mechanism, start: int,
                 eq: Equilibrium | None, welfare: int) -> PriceCertificate:
    accepted = {} if eq is None else {book.orders[k].order_id: int(v) for k, v in enumerate(eq.accepted) if v}
    return PriceCertificate(interval_start_ms=start, mechanism=str(mechanism), grid=grid.name, fees=fees,
                            prices={} if eq is None else dict(sorted(eq.prices.items())),
                            flows={} if eq is None else dict(sorted(eq.flows.items())),
                            accepted=accepted, netted=dict(sorted(book.netted.items())), welfare=welfare)
