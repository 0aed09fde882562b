"""Forecasts → participants' orders → the interval's book (pure logic, no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citygrid.market import Side
from citygrid.records import Forecast, RecordRejected
from citygrid.stream.market.book import IntervalBooks
from citygrid.stream.market.errors import ParticipantsConfigError
from citygrid.stream.market.participants import ForecastPositions, ParticipantsConfig, load_participants

INTERVAL_S = 900
T0 = 1_750_000_000_000 - 1_750_000_000_000 % (INTERVAL_S * 1000)

CONFIG = {"participants": {
    "alice": {"buy_limit": 3_000_000, "sell_limit": 1_000_000, "devices": ["meter-a", "pv-a"]},
    "bob": {"buy_limit": 2_500_000, "sell_limit": 900_000, "devices": ["meter-b"]},
}}


def _fc(device: str, kind: str, kw: float, ts_ms: int = T0 + 60_000, value: str = "p_kw") -> Forecast:
    return Forecast(scope="device", device=device, kind=kind, value=value, ts_ms=ts_ms, forecast=kw, n=1)


def _positions() -> ForecastPositions:
    return ForecastPositions(ParticipantsConfig.model_validate(CONFIG), INTERVAL_S)


def test_consumer_forecast_becomes_a_bid_at_its_buy_limit() -> None:
    participant, start, order = _positions().update(_fc("meter-b", "meter", 2.0))
    assert (participant, start) == ("bob", T0)
    # 2 kW over a quarter-hour is 500 Wh.
    assert order.side is Side.BID and order.wh == 500 and order.limit == 2_500_000
    assert order.participant == "bob" and order.interval_start_ms == T0


def test_prosumer_net_position_flips_from_bid_to_offer_as_its_pv_forecast_arrives() -> None:
    pos = _positions()
    _, _, bid = pos.update(_fc("meter-a", "meter", 1.0))
    assert bid.side is Side.BID and bid.wh == 250
    _, _, offer = pos.update(_fc("pv-a", "pv", 5.0))
    assert offer.side is Side.OFFER and offer.wh == 1000 and offer.limit == 1_000_000
    _, _, balanced = pos.update(_fc("pv-a", "pv", 1.0))  # a revised forecast replaces the old one
    assert balanced is None


def test_negative_model_output_counts_as_zero_and_foreign_devices_are_ignored() -> None:
    pos = _positions()
    _, _, order = pos.update(_fc("pv-a", "pv", -0.3))
    assert order is None
    assert pos.update(_fc("someone-else", "meter", 3.0)) is None
    assert pos.update(_fc("meter-b", "traffic", 3.0, value="vehicles")) is None
    # A feeder's forecast is no participant's, even in a district named like one of its devices.
    feeder = Forecast(scope="feeder", group="meter-b", kind="meter", value="p_kw", ts_ms=T0, forecast=3.0,
                      n=1)
    assert pos.update(feeder) is None
    # A record without a forecast value is not a forecast at all: refused when decoded.
    with pytest.raises(RecordRejected):
        Forecast.decode(json.dumps({**_fc("meter-b", "meter", 1.0).model_dump(), "forecast": None}).encode())


def test_a_flipped_position_replaces_the_other_side_in_the_book() -> None:
    pos, books = _positions(), IntervalBooks(INTERVAL_S * 1000)
    assert books.place_position(*pos.update(_fc("meter-a", "meter", 1.0)))
    assert books.place_position(*pos.update(_fc("pv-a", "pv", 5.0)))
    [(start, orders)] = books.close_until(T0 + INTERVAL_S * 1000)
    assert start == T0 and [(o.participant, o.side, o.wh) for o in orders] == [("alice", Side.OFFER, 1000)]
    # The interval is cleared: a late revision is refused and opens no new book.
    assert not books.place_position(*pos.update(_fc("meter-a", "meter", 9.0)))
    assert books.open == {}


def test_forecasts_for_the_next_interval_go_to_their_own_book_and_old_ones_are_forgotten() -> None:
    pos = _positions()
    pos.update(_fc("meter-b", "meter", 1.0))
    _, start, _ = pos.update(_fc("meter-b", "meter", 1.0, ts_ms=T0 + INTERVAL_S * 1000))
    assert start == T0 + INTERVAL_S * 1000
    pos.forget_before(start)
    assert list(pos.kw) == [("bob", start)]


def test_participants_file_errors_tell_what_to_fix(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text(json.dumps(CONFIG))
    assert load_participants(good).by_device()["pv-a"] == "alice"
    with pytest.raises(ParticipantsConfigError, match="PARTICIPANTS_FILE"):
        load_participants(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"participants": {"x": {"devices": []}}}))
    with pytest.raises(ParticipantsConfigError, match="malformed"):
        load_participants(bad)
    twice = tmp_path / "twice.json"
    shared = {"buy_limit": 1, "sell_limit": 1, "devices": ["d"]}
    twice.write_text(json.dumps({"participants": {"x": shared, "y": shared}}))
    with pytest.raises(ParticipantsConfigError, match="one participant"):
        load_participants(twice)
