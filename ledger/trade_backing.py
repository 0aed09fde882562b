"""Which of an interval's trades the settler may pay: only those backed by both parties' signed orders.

The market publishes, per cleared interval, its signed orders, its trades and a summary committing to
both (citygrid.interval_records). The settler holds an interval's records as they arrive and pays it
only when they prove each other:
- every order verifies against its participant's enrolled order key (checked as it arrives), and the
  orders held hash to the summary's Merkle root;
- each trade names enrolled, distinct parties and a bid and an offer of this interval signed by its
  buyer and its seller; the buyer pays at most its bid's limit and the seller gets at least its
  offer's limit, fees included; no order sells or buys more Wh over all its trades than it signed for;
- the trades that pass hash to the summary's trades hash.
A trade that fails its own check is refused with its reason and the rest of the interval may still
settle; when the passing trades do not hash to the summary, none of the interval is paid. Pure logic.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from citygrid.interval_records import IntervalSummary, orders_root, trades_hash
from citygrid.market import Order, Side, Trade
from citygrid.participants import Participants
from citygrid.signed_orders import SignedOrder


@dataclass
class Evidence:
    """What the settler holds of one interval so far (each record with its origin, for dead letters)."""

    summary: IntervalSummary | None = None
    orders: dict[bytes, SignedOrder] = field(default_factory=dict)  # canonical bytes → order
    trades: dict[tuple[str, str], tuple[Trade, object]] = field(default_factory=dict)  # (id, json) → record
    since: float = 0.0  # when its first record arrived (monotonic)

    def add_trade(self, trade: Trade, record: object) -> None:
        """Hold a trade; the same trade re-published (by a worker taking over) is held once."""
        self.trades.setdefault((trade.trade_id, trade.model_dump_json()), (trade, record))

    def orders_match(self) -> bool:
        """Whether the orders held are exactly the book the summary commits to."""
        s = self.summary
        return s is not None and len(self.orders) == s.order_count and orders_root(self.orders.values()) == \
            s.orders_root


@dataclass(frozen=True)
class Verdict:
    """What to do with an interval: the trades to pay, those refused (with reason), or why none is."""

    pay: list[Trade]
    refused: list[tuple[object, str, str]]  # (the trade's record, reason, error)
    problem: str | None = None  # set: pay nothing of this interval


def judge(ev: Evidence, participants: Participants, grid_operator: str) -> Verdict:
    """The verdict on an interval whose summary and orders are held (see the module docstring)."""
    assert ev.summary is not None
    book = {o.order_id: o for o in (s.unverified_order() for s in ev.orders.values())}  # verified on arrival
    used: dict[str, int] = defaultdict(int)
    passed: list[tuple[Trade, object]] = []
    refused: list[tuple[object, str, str]] = []
    for trade, record in sorted(ev.trades.values(), key=lambda tr: tr[0].trade_id):
        problem = trade_problem(trade, book, participants, grid_operator, ev.summary.interval_start_ms)
        if problem is None:
            over = [oid for oid in (trade.bid_id, trade.offer_id) if used[oid] + trade.wh > book[oid].wh]
            problem = ("over_order", f"trade {trade.trade_id} takes {over[0]} past its signed Wh") if over \
                else None
        if problem is not None:
            refused.append((record, *problem))
            continue
        used[trade.bid_id] += trade.wh
        used[trade.offer_id] += trade.wh
        passed.append((trade, record))
    pay = [t for t, _ in passed]
    if len(pay) != ev.summary.trade_count or trades_hash(pay) != ev.summary.trades_hash:
        why = (f"interval {ev.summary.interval_start_ms}: the {len(pay)} backed trades do not hash to the "
               f"summary's {ev.summary.trade_count} (trades hash {ev.summary.trades_hash[:16]}…)")
        return Verdict([], refused + [(r, "trades_hash_mismatch", why) for _, r in passed], why)
    return Verdict(pay, refused)


def trade_problem(trade: Trade, book: dict[str, Order], participants: Participants, grid_operator: str,
                  interval_start_ms: int) -> tuple[str, str] | None:
    """(reason, error) if one trade is not backed by its parties' signed orders, else None."""
    for party in (trade.buyer, trade.seller, grid_operator):
        if party not in participants:
            return "unknown_participant", f"trade {trade.trade_id}: {party[:64]!r} is not enrolled"
    if participants.name_of(trade.buyer) == participants.name_of(trade.seller):
        return "self_trade", f"trade {trade.trade_id}: buyer and seller are the same participant"
    bid, offer = book.get(trade.bid_id), book.get(trade.offer_id)
    if trade.interval_start_ms != interval_start_ms or bid is None or offer is None:
        return "unbacked", f"trade {trade.trade_id}: no signed bid and offer of interval {interval_start_ms}"
    if (bid.side, offer.side) != (Side.BID, Side.OFFER) or \
            (participants.name_of(trade.buyer), participants.name_of(trade.seller)) != \
            (bid.participant, offer.participant):
        return "unbacked", f"trade {trade.trade_id}: its orders are not the buyer's bid and seller's offer"
    if trade.buyer_pays > bid.limit * trade.wh or trade.seller_receives < offer.limit * trade.wh:
        return "outside_limits", (f"trade {trade.trade_id}: the buyer pays {trade.buyer_pays} (bid allows "
                                  f"{bid.limit * trade.wh}) and the seller gets {trade.seller_receives} "
                                  f"(offer asks {offer.limit * trade.wh})")
    return None


def verified_order(raw: bytes, participants: Participants) -> SignedOrder:
    """A published order record once it verifies (OrderRefused, with its reason, otherwise)."""
    signed = SignedOrder.decode(raw)
    signed.verified(participants)
    return signed
