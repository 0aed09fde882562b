"""The market's topics and agents on the stream app: orders in, cleared trades out.

`register_market(app, settings)` is called by `citygrid.stream.app.make_app`.
Participants (or the forecasting agents on their behalf) publish JSON orders to
the orders topic; each interval's book closes `gate_s` after the interval ends
by wall clock, is cleared, and every trade is published to the trades topic
keyed by interval, where the settler picks it up. With a participants file
(`market.participants_file`), the learner's forecasts also become orders: each
participant's forecast net position for an interval is its bid or offer.
"""

from __future__ import annotations

import json
import time

import faust
import structlog
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from citygrid.market import Mechanism, Order
from citygrid.settings import CitygridSettings
from citygrid.stream.market.auction import clear
from citygrid.stream.market.book import IntervalBooks
from citygrid.stream.market.participants import ForecastPositions, load_participants

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


def register_market(app: faust.App, s: CitygridSettings) -> IntervalBooks:
    """Declare the market's topics, agent and clearing timer on `app`; return the live books."""
    m = s.market
    orders_topic = app.topic(s.kafka.orders_topic, key_type=bytes, value_type=bytes)
    trades_topic = app.topic(s.kafka.trades_topic, key_type=bytes, value_type=bytes)
    books = IntervalBooks(m.interval_s * 1000)

    @app.agent(orders_topic)
    async def collect_orders(stream: faust.Stream) -> None:
        async for value in stream:
            try:
                order = Order.model_validate_json(value)
            except ValidationError as exc:
                REFUSED.inc()
                log.warning("market_order_invalid", error=str(exc)[:200])
                continue
            if books.add(order):
                ORDERS.inc()
            else:
                REFUSED.inc()
                log.warning("market_order_late", order=order.order_id, interval=order.interval_start_ms)

    positions = (ForecastPositions(load_participants(m.participants_file), m.interval_s)
                 if m.participants_file else None)
    if positions is not None:
        forecasts_topic = app.topic(s.kafka.forecasts_topic, key_type=bytes, value_type=bytes)

        @app.agent(forecasts_topic)
        async def orders_from_forecasts(stream: faust.Stream) -> None:
            async for value in stream:
                try:
                    placed = positions.update(json.loads(value))
                except (ValueError, KeyError, TypeError) as exc:
                    REFUSED.inc()
                    log.warning("market_forecast_invalid", error=str(exc)[:200])
                    continue
                if placed is None:
                    continue  # not a participant's device, or no forecast yet
                participant, start, order = placed
                if books.place_position(participant, start, order):
                    FORECAST_ORDERS.inc()
                else:
                    REFUSED.inc()
                    log.warning("market_forecast_late", participant=participant, interval=start)

    @app.timer(interval=m.tick_s)
    async def clear_due() -> None:
        # A book is due once its interval has ended and the gate closure has passed.
        gate_ms = int((time.time() - m.gate_s) * 1000) - m.interval_s * 1000 + 1
        if positions is not None:
            positions.forget_before(books.closed_before_ms)
        for start, orders in books.close_until(gate_ms):
            t0 = time.perf_counter()
            result = clear(orders, m.grid_fee, Mechanism(m.mechanism), start)
            CLEAR_SECONDS.observe(time.perf_counter() - t0)
            for trade in result.trades:
                await trades_topic.send(key=str(start).encode(), value=trade.model_dump_json().encode())
            TRADES.inc(len(result.trades))
            CLEARED_KWH.set(result.wh / 1000)
            if result.clearing_price is not None:
                CLEARING_PRICE.set(result.clearing_price)
            log.info("market_cleared", interval=start, orders=len(orders), trades=len(result.trades),
                     wh=result.wh, price=result.clearing_price, welfare=result.welfare)

    return books
