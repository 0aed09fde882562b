"""A participant's position from its devices' forecasts, and the order it implies.

A participant (a household, a shop) owns devices: meters that consume and PV inverters that generate
(citygrid.participants holds who owns what). The learner forecasts each device's power for the next
interval; the participant's net position is its generation minus its consumption over that interval,
which `order_from_forecast` turns into an offer (surplus) or a bid (deficit) at its stated limits.
Only the participant's own bidder (`citygrid market bid`, holding its order key) does this and signs
the result: the market itself never makes an order for anyone. Pure logic, no broker.
"""

from __future__ import annotations

from collections import defaultdict

from citygrid.market import Order, Side
from citygrid.participants import Participant
from citygrid.records import Forecast
from citygrid.signed_orders import order_id_prefix

# The reading kinds whose power is generation; every other energy kind (meters) is consumption.
GENERATION_KINDS = frozenset({"pv"})


def order_from_forecast(participant: str, interval_start_ms: int, net_wh: float, buy_limit: int,
                        sell_limit: int, nonce: int = 0, expires_ms: int = 0) -> Order | None:
    """A bid for a forecast deficit (net_wh < 0) or an offer for a surplus; None if balanced.

    One order id per participant and interval, whichever side: a revised forecast that flips the
    position replaces the order (with a higher nonce) instead of leaving the other side booked.
    """
    wh = round(abs(net_wh))
    if wh == 0:
        return None
    side = Side.OFFER if net_wh > 0 else Side.BID
    return Order(
        order_id=f"{order_id_prefix(participant)}{interval_start_ms}", participant=participant,
        side=side, wh=wh, limit=sell_limit if side is Side.OFFER else buy_limit,
        interval_start_ms=interval_start_ms, nonce=nonce, expires_ms=expires_ms,
    )


class ForecastPositions:
    """One participant's latest forecast per device and interval, and its net position."""

    def __init__(self, name: str, participant: Participant, interval_s: int) -> None:
        self.name = name
        self.participant = participant
        self.devices = frozenset(participant.devices)
        self.interval_ms = interval_s * 1000
        self.wh_per_kw = interval_s / 3.6  # kW held over one interval, in Wh
        self.kw: dict[int, dict[str, float]] = defaultdict(dict)

    def update(self, forecast: Forecast) -> tuple[int, float] | None:
        """(interval start, net Wh) after this forecast; None if it is not a power forecast of our devices.

        A device's newer forecast for the same interval replaces its older one.
        """
        if forecast.scope != "device" or forecast.device not in self.devices or forecast.value != "p_kw":
            return None
        start = forecast.ts_ms - forecast.ts_ms % self.interval_ms
        # A model can forecast slightly below zero; the kind, not the sign, says which way power flows.
        kw = max(0.0, forecast.forecast)
        position = self.kw[start]
        position[forecast.device] = kw if forecast.kind in GENERATION_KINDS else -kw
        return start, sum(position.values()) * self.wh_per_kw

    def order(self, start: int, net_wh: float, nonce: int, expires_ms: int) -> Order | None:
        """The participant's order for a net position (None if balanced)."""
        p = self.participant
        return order_from_forecast(self.name, start, net_wh, p.buy_limit, p.sell_limit, nonce, expires_ms)

    def forget_before(self, start_ms: int) -> None:
        """Drop positions of intervals already closed, so memory stays bounded."""
        for start in [s for s in self.kw if s < start_ms]:
            del self.kw[start]
