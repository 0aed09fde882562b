"""Re-checking a published interval from its records alone: the stream half of `citygrid market audit`.

Given an interval's published signed orders, trades and summary, anyone can check that every order is
signed by its participant's enrolled key, that the orders hash to the summary's Merkle root, and that
clearing them again (same mechanism and fee) gives exactly the published trades, price and trades
hash. The chain half (the settlement remark and transfers) is `citygrid.ledger.audit`. Pure logic.
"""

from __future__ import annotations

from citygrid.interval_records import PublishedInterval, orders_root, trades_hash
from citygrid.market import Mechanism
from citygrid.participants import Participants
from citygrid.signed_orders import OrderRefused
from citygrid.stream.market.auction import MarketPlan
from citygrid.stream.market.exchange import ClearedInterval, clear_interval
from citygrid.stream.market.prices import check_certificate


def audit_book(published: PublishedInterval, participants: Participants, plan: MarketPlan) -> list[str]:
    """Every way the published interval differs from what its signed orders clear to (empty: it holds)."""
    s = published.summary
    problems = []
    for signed in published.orders:
        try:
            order = signed.verified(participants)
        except OrderRefused as exc:
            problems.append(f"order record refused ({exc.reason}): {exc}")
            continue
        if order.interval_start_ms != s.interval_start_ms:
            problems.append(f"order {order.order_id} is for interval {order.interval_start_ms}")
    if len(published.orders) != s.order_count or orders_root(published.orders) != s.orders_root:
        problems.append(f"the {len(published.orders)} published orders do not hash to the summary's root "
                        f"{s.orders_root[:16]}… ({s.order_count} orders)")
    if len(published.trades) != s.trade_count or trades_hash(published.trades) != s.trades_hash:
        problems.append("the published trades do not hash to the summary's trades hash")
    if problems:
        return problems
    again = reclear(published, plan)
    if sorted(again.trades, key=lambda t: t.trade_id) != sorted(published.trades, key=lambda t: t.trade_id):
        problems.append(f"clearing the signed orders again gives {len(again.trades)} other trades than the "
                        f"{len(published.trades)} published")
    if again.summary != s:
        problems.append("clearing the signed orders again gives another summary (price or trades hash)")
    if again.certificate is not None and not again.certificate.fees.has_percentage:
        orders = [o.unverified_order() for o in published.orders]
        problems += [f"price certificate: {p}" for p in
                     check_certificate(again.certificate, orders, plan.grid, plan.location)]
    return problems


def reclear(published: PublishedInterval, plan: MarketPlan) -> ClearedInterval:
    """The interval cleared again from its published signed orders."""
    return clear_interval(published.summary.interval_start_ms, list(published.orders),
                          Mechanism(published.summary.mechanism), plan)
