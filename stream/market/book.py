"""Per-interval order books, and turning a participant's forecast into an order.

Pure logic with no broker, so the Faust agent that feeds it stays thin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citygrid.market import Order, Side


def order_from_forecast(participant: str, interval_start_ms: int, net_wh: float, buy_limit: int,
                        sell_limit: int) -> Order | None:
    """A bid for a forecast deficit (net_wh < 0) or an offer for a surplus; None if balanced."""
    wh = round(abs(net_wh))
    if wh == 0:
        return None
    side = Side.OFFER if net_wh > 0 else Side.BID
    return Order(
        order_id=f"{participant}:{interval_start_ms}:{side.value}", participant=participant,
        side=side, wh=wh, limit=sell_limit if side is Side.OFFER else buy_limit,
        interval_start_ms=interval_start_ms,
    )


@dataclass
class IntervalBooks:
    """Open order books keyed by interval start; a book closes when the gate closes.

    An order replaces an earlier one with the same id (a participant revising its
    forecast); orders for an interval whose gate already closed are refused.
    """

    interval_ms: int
    open: dict[int, dict[str, Order]] = field(default_factory=dict)
    closed_before_ms: int = 0

    def add(self, order: Order) -> bool:
        """Add or replace an order; False if its interval is already cleared."""
        start = order.interval_start_ms - order.interval_start_ms % self.interval_ms
        if start < self.closed_before_ms:
            return False
        self.open.setdefault(start, {})[order.order_id] = order
        return True

    def place_position(self, participant: str, interval_start_ms: int, order: Order | None) -> bool:
        """Replace the participant's forecast order for the interval (None withdraws it); False if cleared.

        Its position may flip from surplus to deficit as forecasts are revised, so the order of
        the other side must go, not only the one with the same id.
        """
        start = interval_start_ms - interval_start_ms % self.interval_ms
        if start < self.closed_before_ms:
            return False
        book = self.open.setdefault(start, {})
        for side in Side:
            book.pop(f"{participant}:{interval_start_ms}:{side.value}", None)
        if order is not None:
            book[order.order_id] = order
        return True

    def close_until(self, gate_ms: int) -> list[tuple[int, list[Order]]]:
        """Remove and return every book whose interval starts before `gate_ms`, oldest first."""
        due = sorted(s for s in self.open if s < gate_ms)
        self.closed_before_ms = max(self.closed_before_ms, gate_ms)
        return [(s, sorted(self.open.pop(s).values(), key=lambda o: o.order_id)) for s in due]
