"""A participant's own bidder on the real Kafka: forecasts of its devices in (as the participant's Kafka
principal), its orders out, each signed with its own key and numbered; others' forecasts ignored."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from market_support import make_market
from support import as_kafka_service, wait_until

from citygrid import kafka_clients
from citygrid.market import Side
from citygrid.participants import Participants
from citygrid.records import Forecast
from citygrid.signed_orders import SignedOrder
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.stream.market.bidder import Bidder
from citygrid.stream.market.exchange import order_key

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


def test_the_bidder_turns_its_devices_forecasts_into_its_own_signed_orders(live, tmp_path: Path) -> None:
    m = make_market(live, ["alice", "bob"], interval_s=900)
    s = m.s
    registry = Participants.load(s.paths.participants)
    registry = registry.with_entry("alice", registry.get("alice").model_copy(update={
        "devices": ("meter-a", "pv-a"), "buy_limit": 3_000_000, "sell_limit": 900_000}))
    registry.save(s.paths.participants)
    ensure_topics(s.kafka, [s.kafka.forecasts_topic, s.kafka.orders_topic])
    start = 1_750_000_500_000 - 1_750_000_500_000 % 900_000
    rows = [("meter-a", "meter", 2.0), ("pv-a", "pv", 6.0), ("meter-b", "meter", 9.0)]  # meter-b: bob's
    producer = kafka_clients.producer(s.kafka, acks="all")
    for device, kind, kw in rows:
        f = Forecast(scope="device", device=device, kind=kind, value="p_kw", ts_ms=start + 1, forecast=kw,
                     n=1)
        producer.send(s.kafka.forecasts_topic, key=device.encode(), value=f.encode())
    producer.flush(30)
    producer.close(5)

    participant = as_kafka_service(s, "participant")
    bidder, stop = Bidder(participant, "alice", m.keys["alice"]), threading.Event()
    thread = threading.Thread(target=bidder.run, args=(participant, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(read_topic(s.kafka, s.kafka.orders_topic, 3)) >= 2, 60, "alice's two orders")
    finally:
        stop.set()
        thread.join(30)
    records = read_topic(s.kafka, s.kafka.orders_topic, 3)
    orders = [SignedOrder.decode(r.value).verified(registry) for r in records]
    assert {r.key for r in records} == {order_key(start)}
    # Devices' forecasts come from different partitions in either order; the last order is the net position.
    assert len(orders) == 2
    assert (orders[1].participant, orders[1].side, orders[1].wh) == ("alice", Side.OFFER, 1000)
    assert orders[1].nonce > orders[0].nonce and orders[0].order_id == orders[1].order_id
