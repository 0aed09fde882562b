"""A participant's position from its devices' forecasts, and the order it implies.

A participant (a household, a shop) owns devices: meters that consume and PV inverters that generate
(citygrid.participants holds who owns what). The learner forecasts each device's power for the next
interval with its P10/P50/P90; the participant's net position is its generation minus its consumption
over that interval, and the order rule (citygrid.stream.bidding: offer what it is confident to deliver,
bid for what it is confident to need) says how much of it to trade; `order_from_forecast` makes that an
offer (surplus) or a bid (deficit) at its stated limits. A participant with a battery plans it from
the same forecasts (citygrid.stream.battery) and trades the position the plan leaves.
Only the participant's own bidder (`citygrid market bid`, holding its order key) does this and signs
the result: the market itself never makes an order for anyone. Pure logic, no broker.
"""

from __future__ import annotations

from collections import defaultdict

from citygrid.market import Order, Side
from citygrid.participants import Participant
from citygrid.records import Forecast
from citygrid.signed_orders import order_id_prefix
from citygrid.stream.battery import BatteryAgent
from citygrid.stream.bidding import Position, combine, confident_wh

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


def device_position(forecast: Forecast, wh_per_kw: float) -> Position:
    """A device's position for the forecast interval, from its P10/P50/P90 (a point forecast without)."""
    point = (forecast.forecast,) * 3
    quantiles = (forecast.p10, forecast.p50, forecast.p90)
    kw = point if None in quantiles else quantiles
    return Position.of_device(*(v * wh_per_kw for v in kw), generation=forecast.kind in GENERATION_KINDS)


def tradable_wh(position: Position, battery: BatteryAgent | None) -> tuple[float, float]:
    """(Wh to trade by the order rule, the battery's planned discharge) for a participant's position."""
    if battery is None:
        return confident_wh(position), 0.0
    planned = battery.plan(position.p50)
    return confident_wh(position.shifted(planned), *battery.spare(planned)), planned


class ForecastPositions:
    """One participant's latest forecast per device and interval, and the Wh its order rule trades."""

    def __init__(self, name: str, participant: Participant, interval_s: int) -> None:
        self.name = name
        self.participant = participant
        self.devices = frozenset(participant.devices)
        self.interval_ms = interval_s * 1000
        self.wh_per_kw = interval_s / 3.6  # kW held over one interval, in Wh
        self.positions: dict[int, dict[str, Position]] = defaultdict(dict)
        self.battery = (BatteryAgent(participant.battery, interval_s)
                        if participant.battery is not None else None)
        self.planned: dict[int, tuple[float, float]] = {}  # start → (battery plan, net P50)

    def update(self, forecast: Forecast) -> tuple[int, float] | None:
        """(interval start, Wh to trade: offer > 0, bid < 0) after this forecast; None if it is not a
        power forecast of our devices. A device's newer forecast for the same interval replaces its older one.
        """
        if forecast.scope != "device" or forecast.device not in self.devices or forecast.value != "p_kw":
            return None
        start = forecast.ts_ms - forecast.ts_ms % self.interval_ms
        self.positions[start][forecast.device] = device_position(forecast, self.wh_per_kw)
        position = combine(self.positions[start].values())
        wh, planned = tradable_wh(position, self.battery)
        if self.battery is not None:
            self.planned[start] = (planned, position.p50)
        return start, wh

    def order(self, start: int, net_wh: float, nonce: int, expires_ms: int) -> Order | None:
        """The participant's order for the Wh its rule trades (None if nothing)."""
        p = self.participant
        return order_from_forecast(self.name, start, net_wh, p.buy_limit, p.sell_limit, nonce, expires_ms)

    def forget_before(self, start_ms: int) -> None:
        """Drop positions of intervals already closed, so memory stays bounded; the battery runs each
        closed interval on its plan (the bidder never sees the battery's meter)."""
        for start in sorted(s for s in self.positions if s < start_ms):
            del self.positions[start]
        for start in sorted(s for s in self.planned if s < start_ms):
            planned, p50 = self.planned.pop(start)
            assert self.battery is not None
            self.battery.close(planned, p50)
