"""A participant's bidder: its own devices' forecasts → its net position → an order signed with its own
key, numbered so each revision replaces the last (pure logic, no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.market import Side
from citygrid.participants import Participant, Participants
from citygrid.records import Alert, Forecast
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey
from citygrid.stream.market.bidder import Bidder, load_order_key
from citygrid.stream.market.errors import BidderKeyError
from citygrid.stream.market.participants import ForecastPositions

INTERVAL_S = 900
T0 = 1_750_000_000_000 - 1_750_000_000_000 % (INTERVAL_S * 1000)
ADDRESS = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE = Participant(address=ADDRESS, order_key="00" * 32, devices=("meter-a", "pv-a"), buy_limit=3_000_000,
                    sell_limit=1_000_000)


def _fc(device: str, kind: str, kw: float, ts_ms: int = T0 + 60_000, value: str = "p_kw") -> Forecast:
    return Forecast(scope="device", device=device, kind=kind, value=value, ts_ms=ts_ms, forecast=kw, n=1)


def test_a_prosumers_position_flips_from_bid_to_offer_as_its_pv_forecast_arrives() -> None:
    pos = ForecastPositions("alice", ALICE, INTERVAL_S)
    start, net = pos.update(_fc("meter-a", "meter", 1.0))
    bid = pos.order(start, net, nonce=1, expires_ms=T0 + 1)
    # 1 kW over a quarter-hour is 250 Wh, bought at the participant's buy limit.
    assert (start, bid.side, bid.wh, bid.limit, bid.order_id) == (T0, Side.BID, 250, 3_000_000, f"alice:{T0}")
    offer = pos.order(*pos.update(_fc("pv-a", "pv", 5.0)), nonce=2, expires_ms=T0 + 1)
    assert (offer.side, offer.wh, offer.limit, offer.order_id) == (Side.OFFER, 1000, 1_000_000, bid.order_id)
    assert pos.order(*pos.update(_fc("pv-a", "pv", 1.0)), nonce=3, expires_ms=T0 + 1) is None  # balanced


def test_other_devices_other_values_and_group_forecasts_are_not_the_participants() -> None:
    pos = ForecastPositions("alice", ALICE, INTERVAL_S)
    assert pos.update(_fc("meter-b", "meter", 3.0)) is None
    assert pos.update(_fc("meter-a", "traffic", 3.0, value="vehicles")) is None
    feeder = Forecast(scope="feeder", group="meter-a", kind="meter", value="p_kw", ts_ms=T0, forecast=3.0,
                      n=1)
    assert pos.update(feeder) is None
    pos.update(_fc("meter-a", "meter", 1.0, ts_ms=T0 + INTERVAL_S * 1000))
    pos.update(_fc("meter-a", "meter", 1.0))
    pos.forget_before(T0 + INTERVAL_S * 1000)
    assert list(pos.positions) == [T0 + INTERVAL_S * 1000]


def _settings(tmp_path: Path, key: DeviceKey) -> CitygridSettings:
    s = CitygridSettings(paths=PathSettings.under(tmp_path))
    Participants({"alice": ALICE.model_copy(update={"order_key": key.public_key.hex()})}).save(
        s.paths.participants)
    return s


def test_the_bidder_signs_each_revision_with_a_higher_nonce_and_only_with_its_enrolled_key(
        tmp_path: Path) -> None:
    key = DeviceKey.generate()
    s = _settings(tmp_path, key)
    registry = Participants.load(s.paths.participants)
    bidder = Bidder(s, "alice", key)
    first = bidder.on_forecast(_fc("meter-a", "meter", 1.0).encode()).verified(registry)
    second = bidder.on_forecast(_fc("meter-a", "meter", 2.0).encode()).verified(registry)
    assert second.nonce > first.nonce and second.wh == 500 and second.order_id == first.order_id
    assert second.expires_ms == T0 + INTERVAL_S * 1000 + int(s.market.gate_s * 1000)
    alert = Alert(device="meter-a", kind="meter", seq=1, ts_ms=T0, value=1.0, score=1.0)
    assert bidder.on_forecast(alert.encode()) is None and bidder.on_forecast(b"\xff") is None
    key.save(tmp_path / "alice.key")
    assert load_order_key(registry, "alice", tmp_path / "alice.key").public_key == key.public_key
    DeviceKey.generate().save(tmp_path / "other.key")
    with pytest.raises(BidderKeyError, match="not alice's enrolled"):
        load_order_key(registry, "alice", tmp_path / "other.key")
    with pytest.raises(BidderKeyError, match="enrol"):
        load_order_key(registry, "alice", tmp_path / "missing.key")
