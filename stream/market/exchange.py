"""What the market's agents do with an order, a forecast and a clock tick, as plain functions.

Orders and participants' forecast positions go into the interval books; once an
interval's gate has closed its book is cleared into trades. No broker here: the
Faust agents in `agents.py` only move records between Kafka and these functions.
"""

from __future__ import annotations

import time
from typing import NoReturn

import structlog
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from citygrid.market import Mechanism, Order, Trade
from citygrid.records import MAX_RECORD_BYTES, Forecast, RecordRejected
from citygrid.settings import MarketSettings
from citygrid.stream.market.auction import clear
from citygrid.stream.market.book import IntervalBooks
from citygrid.stream.market.participants import ForecastPositions

log = structlog.get_logger(__name__)

ORDERS = Counter("citygrid_market_orders_total", "Orders accepted into an interval's book")
REFUSED = Counter("citygrid_market_orders_refused_total", "Orders that did not parse or came too late")
TRADES = Counter("citygrid_market_trades_total", "Trades cleared")
CLEAR_SECONDS = Histogram("citygrid_market_clear_seconds", "Time to clear one interval's book")
FORECAST_ORDERS = Counter("citygrid_market_forecast_orders_total",
                          "Participants' orders placed or revised from the learner's forecasts")
CLEARED_KWH = Gauge("citygrid_market_cleared_volume_kwh", "Energy traded in the last cleared interval")
CLEARING_PRICE = Gauge("citygrid_market_clearing_price",
                       "Clearing price of the last cleared interval (planck per Wh)")


class Refused(Exception):
    """A record the market cannot take: `reason` (short) for the dead letter, and the error."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason


def take_order(books: IntervalBooks, raw: bytes) -> None:
    """Put an order record into its interval's book, or raise Refused (counted) saying why not."""
    if len(raw) > MAX_RECORD_BYTES:
        _refuse("market_order_invalid", "too_large", f"order record of {len(raw)} bytes")
    try:
        order = Order.model_validate_json(raw)
    except ValidationError as exc:
        _refuse("market_order_invalid", "malformed", f"not an Order record: {str(exc)[:300]}")
    if not books.add(order):
        _refuse("market_order_late", "late",
                f"order {order.order_id} for interval {order.interval_start_ms} came after its gate closed")
    ORDERS.inc()


def accept_order(books: IntervalBooks, raw: bytes) -> bool:
    """Put an order record into its interval's book; False (counted, logged) if invalid or too late."""
    try:
        take_order(books, raw)
    except Refused:
        return False
    return True


def take_forecast(books: IntervalBooks, positions: ForecastPositions, raw: bytes) -> bool:
    """Turn a forecast record into its participant's revised order; False if it is not a participant's
    power forecast (the topic is shared); Refused (counted) if it is no forecast or too late."""
    try:
        forecast = Forecast.decode(raw)
    except RecordRejected as exc:
        _refuse("market_forecast_invalid", "malformed", str(exc)[:300])
    placed = positions.update(forecast)
    if placed is None:
        return False  # not a participant's device, or not a power forecast
    participant, start, order = placed
    if not books.place_position(participant, start, order):
        _refuse("market_forecast_late", "late", f"{participant}'s forecast for interval {start} came late")
    FORECAST_ORDERS.inc()
    return True


def place_forecast(books: IntervalBooks, positions: ForecastPositions, raw: bytes) -> bool:
    """`take_forecast`, with a refusal as False: a record that is not a forecast is never fatal."""
    try:
        return take_forecast(books, positions, raw)
    except Refused:
        return False


def _refuse(event: str, reason: str, error: str) -> NoReturn:
    REFUSED.inc()
    log.warning(event, reason=reason, error=error)
    raise Refused(reason, error)


def clear_due(books: IntervalBooks, now_ms: int, m: MarketSettings,
              positions: ForecastPositions | None = None) -> list[Trade]:
    """Clear every book whose interval has ended and whose gate closure has passed; their trades."""
    gate_ms = now_ms - int(m.gate_s * 1000) - m.interval_s * 1000 + 1
    if positions is not None:
        positions.forget_before(books.closed_before_ms)
    trades: list[Trade] = []
    for start, orders in books.close_until(gate_ms):
        t0 = time.perf_counter()
        result = clear(orders, m.grid_fee, Mechanism(m.mechanism), start)
        CLEAR_SECONDS.observe(time.perf_counter() - t0)
        TRADES.inc(len(result.trades))
        CLEARED_KWH.set(result.wh / 1000)
        if result.clearing_price is not None:
            CLEARING_PRICE.set(result.clearing_price)
        log.info("market_cleared", interval=start, orders=len(orders), trades=len(result.trades),
                 wh=result.wh, price=result.clearing_price, welfare=result.welfare)
        trades.extend(result.trades)
    return trades
