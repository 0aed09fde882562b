"""The market's topics and agents on the stream app: orders in, cleared trades out.

`register_market(app, settings)` is called by `citygrid.stream.app.make_app`.
Participants (or the forecasting agents on their behalf) publish JSON orders to
the orders topic; each interval's book closes `gate_s` after the interval ends
by wall clock, is cleared, and every trade is published to the trades topic
keyed by interval, where the settler picks it up. With a participants file
(`market.participants_file`), the learner's forecasts also become orders: each
participant's forecast net position for an interval is its bid or offer.
What each agent does lives in `exchange`; here records only move.
"""

from __future__ import annotations

import time

import faust

from citygrid.settings import CitygridSettings
from citygrid.stream.dead_letters import WORKER, send_dead
from citygrid.stream.market.book import IntervalBooks
from citygrid.stream.market.exchange import Refused, clear_due, take_forecast, take_order
from citygrid.stream.market.participants import ForecastPositions, load_participants
from citygrid.topics import dead_letters_topic


def register_market(app: faust.App, s: CitygridSettings) -> IntervalBooks:
    """Declare the market's topics, agents and clearing timer on `app`; return the live books."""
    m = s.market
    orders_topic = app.topic(s.kafka.orders_topic, key_type=bytes, value_type=bytes)
    trades_topic = app.topic(s.kafka.trades_topic, key_type=bytes, value_type=bytes)
    books = IntervalBooks(m.interval_s * 1000)
    positions = (ForecastPositions(load_participants(m.participants_file), m.interval_s)
                 if m.participants_file else None)

    orders_dead = app.topic(dead_letters_topic(s.kafka.orders_topic, WORKER),
                            key_type=bytes, value_type=bytes)
    forecasts_dead = app.topic(dead_letters_topic(s.kafka.forecasts_topic, WORKER),
                               key_type=bytes, value_type=bytes)

    @app.agent(orders_topic)
    async def collect_orders(stream: faust.Stream) -> None:
        async for event in stream.events():
            try:
                take_order(books, event.value)
            except Refused as exc:
                await send_dead(orders_dead, "market", event, exc.reason, str(exc))
            except Exception as exc:  # one record must never stop the market
                await send_dead(orders_dead, "market", event, "unprocessable", repr(exc))

    if positions is not None:
        @app.agent(app.topic(s.kafka.forecasts_topic, key_type=bytes, value_type=bytes))
        async def orders_from_forecasts(stream: faust.Stream) -> None:
            async for event in stream.events():
                try:
                    take_forecast(books, positions, event.value)
                except Refused as exc:
                    await send_dead(forecasts_dead, "market", event, exc.reason, str(exc))
                except Exception as exc:  # one record must never stop the market
                    await send_dead(forecasts_dead, "market", event, "unprocessable", repr(exc))

    @app.timer(interval=m.tick_s)
    async def clear_books() -> None:
        for trade in clear_due(books, int(time.time() * 1000), m, positions):
            await trades_topic.send(key=str(trade.interval_start_ms).encode(),
                                    value=trade.model_dump_json().encode())

    return books
