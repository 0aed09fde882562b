"""What the market agents do, without a broker: orders and forecasts into the books, due books cleared."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from citygrid.market import Mechanism, Order, Side
from citygrid.records import Alert, Forecast
from citygrid.settings import MarketSettings
from citygrid.stream.market import clear
from citygrid.stream.market.book import IntervalBooks
from citygrid.stream.market.exchange import accept_order, clear_due, place_forecast
from citygrid.stream.market.participants import ForecastPositions, ParticipantsConfig

M = MarketSettings(interval_s=900, gate_s=5.0)
INTERVAL_MS = M.interval_s * 1000
T0 = 1_750_000_000_000 - 1_750_000_000_000 % INTERVAL_MS
CONFIG = {"participants": {"carol": {"buy_limit": 3_000_000, "sell_limit": 1_000_000, "devices": ["m-c"]}}}


def _refused() -> float:
    return REGISTRY.get_sample_value("citygrid_market_orders_refused_total") or 0.0


def _order(oid: str, side: Side, wh: int, limit: int, start: int = T0) -> Order:
    return Order(order_id=oid, participant=oid, side=side, wh=wh, limit=limit, interval_start_ms=start)


def test_orders_go_into_their_book_and_junk_or_late_ones_are_refused_and_counted() -> None:
    books = IntervalBooks(INTERVAL_MS)
    before = _refused()
    assert accept_order(books, _order("a", Side.BID, 100, 5_000_000).model_dump_json().encode())
    assert list(books.open[T0]) == ["a"]
    assert not accept_order(books, b"{not an order")
    books.close_until(T0 + INTERVAL_MS)
    assert not accept_order(books, _order("b", Side.BID, 100, 1).model_dump_json().encode())
    assert _refused() == before + 2


def test_a_participants_forecast_places_its_order_and_other_records_are_skipped() -> None:
    books = IntervalBooks(INTERVAL_MS)
    positions = ForecastPositions(ParticipantsConfig.model_validate(CONFIG), M.interval_s)
    forecast = Forecast(scope="device", device="m-c", kind="meter", value="p_kw", ts_ms=T0 + 1,
                        forecast=2.0, n=3)
    before = _refused()
    assert place_forecast(books, positions, forecast.encode())
    [order] = books.open[T0].values()
    assert (order.participant, order.side, order.wh) == ("carol", Side.BID, 500)
    # Another record kind on the topic, or bytes that are no record: skipped and counted, never fatal.
    alert = Alert(device="m-c", kind="meter", seq=1, ts_ms=T0, value=1.0, score=1.0)
    assert not place_forecast(books, positions, alert.encode())
    assert not place_forecast(books, positions, b"\xff")
    assert _refused() == before + 2
    feeder = forecast.model_copy(update={"scope": "feeder", "device": None, "group": "m-c"})
    assert not place_forecast(books, positions, feeder.encode())  # not a participant's: not refused
    assert _refused() == before + 2


def test_a_book_clears_once_its_gate_has_passed_into_the_auctions_trades() -> None:
    books = IntervalBooks(INTERVAL_MS)
    orders = [_order("b1", Side.BID, 700, 3_500_000), _order("o1", Side.OFFER, 900, 600_000),
              _order("next", Side.BID, 50, 9_000_000, T0 + INTERVAL_MS)]
    for o in orders:
        books.add(o)
    gate = T0 + INTERVAL_MS + int(M.gate_s * 1000)
    assert clear_due(books, gate - 1, M) == []  # the interval ended, but its gate has not closed
    trades = clear_due(books, gate, M)
    assert trades == clear(orders[:2], M.grid_fee, Mechanism(M.mechanism), T0).trades and trades
    assert clear_due(books, gate + 1, M) == []  # cleared once only
    assert list(books.open) == [T0 + INTERVAL_MS]


def test_a_refused_order_says_why_for_its_dead_letter_and_unbounded_integers_are_refused() -> None:
    import json

    from citygrid.stream.market.exchange import Refused, take_order

    books = IntervalBooks(INTERVAL_MS)
    good = json.loads(_order("c", Side.OFFER, 100, 1).model_dump_json())
    for changes, reason in (({"wh": 2**63}, "malformed"), ({"limit": 2**64}, "malformed"),
                            ({"interval_start_ms": -1}, "malformed"), ({}, None)):
        raw = json.dumps(good | changes).encode()
        if reason is None:
            take_order(books, raw)
            continue
        with pytest.raises(Refused) as err:
            take_order(books, raw)
        assert err.value.reason == reason
    with pytest.raises(Refused) as err:
        take_order(books, b" " * 70_000)
    assert err.value.reason == "too_large"
