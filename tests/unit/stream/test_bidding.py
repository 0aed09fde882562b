"""The order rule: offer what the participant is confident to deliver, bid for what it is confident to
need, from its quantiles; a battery's spare power moves it toward the median, never past it."""

from __future__ import annotations

import pytest

from citygrid.market import Side
from citygrid.participants import Participant
from citygrid.records import Forecast
from citygrid.stream.bidding import Position, combine, confident_wh, point_wh
from citygrid.stream.market.participants import ForecastPositions, order_from_forecast

T0 = 1_750_000_000_000 - 1_750_000_000_000 % 900_000


def test_a_surplus_offers_its_p10_and_a_deficit_bids_its_p90() -> None:
    assert confident_wh(Position(200, 500, 700)) == 200
    assert confident_wh(Position(-900, -600, -150)) == -150
    assert point_wh(Position(200, 500, 700)) == 500


def test_no_order_when_the_band_straddles_zero() -> None:
    assert confident_wh(Position(-100, 50, 300)) == 0
    assert confident_wh(Position(-300, -50, 100)) == 0


def test_a_batterys_spare_power_moves_the_trade_toward_the_median_but_not_past_it() -> None:
    assert confident_wh(Position(200, 500, 700), spare_discharge_wh=100) == 300
    assert confident_wh(Position(200, 500, 700), spare_discharge_wh=10_000) == 500
    assert confident_wh(Position(-900, -600, -150), spare_charge_wh=200) == -350
    assert confident_wh(Position(-900, -600, -150), spare_charge_wh=10_000) == -600


def test_device_quantiles_are_signed_by_kind_and_summed() -> None:
    meter = Position.of_device(100, 200, 400, generation=False)
    assert meter == Position(-400, -200, -100)  # P90 consumption is the P10 export
    pv = Position.of_device(-5, 300, 500, generation=True)  # a negative PV quantile is no generation
    assert pv == Position(0, 300, 500)
    assert combine([meter, pv]) == Position(-400, 100, 400)


def test_the_order_keeps_the_participants_price_limits_by_side() -> None:
    offer = order_from_forecast("alice", T0, confident_wh(Position(200, 500, 700)), 3_000_000, 1_000_000)
    bid = order_from_forecast("alice", T0, confident_wh(Position(-900, -600, -150)), 3_000_000, 1_000_000)
    assert (offer.side, offer.wh, offer.limit) == (Side.OFFER, 200, 1_000_000)
    assert (bid.side, bid.wh, bid.limit) == (Side.BID, 150, 3_000_000)
    assert order_from_forecast("alice", T0, confident_wh(Position(-1, 0, 1)), 3, 1) is None


@pytest.mark.parametrize(("p10", "p50", "p90", "expected"),
                         [(1.0, 2.0, 3.0, -250.0), (None, None, None, -500.0)])
def test_the_bidder_trades_its_forecasts_quantiles_or_its_point_forecast_without_them(
        p10: float | None, p50: float | None, p90: float | None, expected: float) -> None:
    alice = Participant(address="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", order_key="00" * 32,
                        devices=("meter-a",))
    pos = ForecastPositions("alice", alice, 900)
    f = Forecast(scope="device", device="meter-a", kind="meter", value="p_kw", ts_ms=T0 + 1, forecast=2.0,
                 n=1, p10=p10, p50=p50, p90=p90)
    # 1 kW (the P10 of consumption, so the P90 of export) over a quarter-hour: a 250 Wh bid.
    assert pos.update(f) == (T0, expected)
