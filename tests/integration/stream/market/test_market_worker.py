"""The market on a real Faust worker and real Kafka: orders and forecasts in, the interval's trades out,
exactly those the auction gives on the same book."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from support import wait_until

from citygrid import kafka_clients
from citygrid.devtools.processes import spawn, stop
from citygrid.market import Mechanism, Order, Side, Trade
from citygrid.records import Forecast
from citygrid.settings import CitygridSettings
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.stream.market import clear
from citygrid.stream.market.participants import ForecastPositions, ParticipantsConfig

pytestmark = [pytest.mark.servers, pytest.mark.timeout(150)]

INTERVAL_S = 4
PARTICIPANTS = {"participants": {
    "house1": {"buy_limit": 3_200_000, "sell_limit": 700_000, "devices": ["meter-h1", "pv-h1"]},
    "house2": {"buy_limit": 2_900_000, "sell_limit": 800_000, "devices": ["meter-h2"]},
    "school": {"buy_limit": 2_000_000, "sell_limit": 500_000, "devices": ["pv-school"]},
}}


def _settings(live: CitygridSettings, tmp: Path) -> CitygridSettings:
    path = tmp / "participants.json"
    path.write_text(json.dumps(PARTICIPANTS))
    return live.model_copy(update={"market": live.market.model_copy(update={
        "interval_s": INTERVAL_S, "gate_s": 1.0, "tick_s": 0.3, "participants_file": path}),
        "stream": live.stream.model_copy(update={"state_key": secrets.token_hex(32)})})


def _group_stable(s: CitygridSettings) -> bool:
    admin = kafka_clients.admin(s.kafka)
    try:
        return any(g["group_id"] == s.kafka.stream_app_id and g["group_state"] == "Stable"
                   for g in admin.list_groups())
    finally:
        admin.close()


def _direct_orders(start: int) -> list[Order]:
    rows = [("trader-a", Side.BID, 700, 3_500_000), ("trader-b", Side.BID, 400, 1_000_000),
            ("wind-c", Side.OFFER, 900, 600_000), ("wind-d", Side.OFFER, 300, 2_800_000)]
    return [Order(order_id=f"{p}-{start}", participant=p, side=side, wh=wh, limit=lim,
                  interval_start_ms=start) for p, side, wh, lim in rows]


def _forecasts(start: int) -> list[Forecast]:
    # kW held over a 4 s interval is kW * 1.11 Wh: large values so each participant's order has some Wh.
    rows = [("meter-h1", "meter", 900.0), ("pv-h1", "pv", 400.0), ("meter-h2", "meter", 1500.0),
            ("pv-school", "pv", 2000.0), ("meter-h2", "meter", 1100.0),  # a revised forecast
            ("pv-h1", "pv", 1300.0)]  # house1 flips from bid to offer
    return [Forecast(scope="device", device=d, kind=k, value="p_kw", ts_ms=start + 500, forecast=kw, n=i,
                     based_on_seq=i) for i, (d, k, kw) in enumerate(rows)]


def _expected(s: CitygridSettings, start: int, orders: list[Order], forecasts: list[Forecast]) -> list[Trade]:
    positions = ForecastPositions(ParticipantsConfig.model_validate(PARTICIPANTS), INTERVAL_S)
    latest: dict[str, Order | None] = {}
    for f in forecasts:
        participant, _, order = positions.update(f)
        latest[participant] = order
    book = orders + [o for o in latest.values() if o is not None]
    assert {o.side for o in latest.values() if o} == {Side.BID, Side.OFFER}, "the book must cross both ways"
    return clear(book, s.market.grid_fee, Mechanism(s.market.mechanism), start).trades


def test_orders_and_forecasts_clear_into_the_auctions_trades(live: CitygridSettings, tmp_path: Path) -> None:
    s = _settings(live, tmp_path)
    ensure_topics(s.kafka, [s.kafka.orders_topic, s.kafka.trades_topic, s.kafka.forecasts_topic])
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker.log")
    producer = kafka_clients.producer(s.kafka, acks="all")
    try:
        wait_until(lambda: _group_stable(s), 90, "the stream worker to join its consumer group", every_s=0.3)
        interval_ms = INTERVAL_S * 1000
        now = int(time.time() * 1000)
        start = now - now % interval_ms + 2 * interval_ms  # leaves the worker ≥ 4 s to read the orders
        orders, forecasts = _direct_orders(start), _forecasts(start)
        for o in orders:
            producer.send(s.kafka.orders_topic, key=o.participant.encode(),
                          value=o.model_dump_json().encode())
        for f in forecasts:  # keyed by device, as the learner writes them, so each device's stay in order
            producer.send(s.kafka.forecasts_topic, key=f.device.encode(), value=f.encode())
        # Records on the shared topic that are no participant's forecast are skipped, never fatal.
        producer.send(s.kafka.forecasts_topic, key=b"junk", value=b"{not a forecast")
        # A late order for an interval whose gate has closed must not trade.
        stale = Order(order_id="stale", participant="late", side=Side.OFFER, wh=5_000, limit=0,
                      interval_start_ms=now - now % interval_ms - 3 * interval_ms)
        producer.send(s.kafka.orders_topic, key=b"late", value=stale.model_dump_json().encode())
        producer.flush(30)
        expected = _expected(s, start, orders, forecasts)
        assert expected, "the chosen book must produce trades"

        def got() -> list[Trade]:
            return [Trade.model_validate_json(r.value) for r in read_topic(s.kafka, s.kafka.trades_topic, 5)]

        wait_until(lambda: len(got()) >= len(expected), 40, "the interval's trades", every_s=0.3)
        time.sleep(2 * INTERVAL_S)  # later ticks must not add to or repeat the interval
        trades = got()
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        producer.close(5)
        stop(worker)
    assert sorted(trades, key=lambda t: t.trade_id) == sorted(expected, key=lambda t: t.trade_id)
    assert {t.interval_start_ms for t in trades} == {start}
    assert "stale" not in {t.offer_id for t in trades}
