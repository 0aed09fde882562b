"""The settlement feed's evidence wait runs out only once the feed has read what Kafka holds: a feed
catching up on a backlog must not dead-letter an interval whose other records are still unread."""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition
from support import wait_until

from citygrid import kafka_clients
from citygrid.ledger.settlement_feed import Feed, unread
from citygrid.market import Trade, trade_id
from citygrid.stream.kafka_topics import ensure_topics
from citygrid.topics import market_topics

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


def test_unread_sees_committed_records_only(live) -> None:
    topic = live.kafka.trades_topic
    ensure_topics(live.kafka, market_topics(live.kafka))
    producer = kafka_clients.producer(live.kafka, transactional_id=f"{live.kafka.ingest_group}-wait",
                                      enable_idempotence=True, acks="all")
    consumer = kafka_clients.consumer(live.kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        producer.init_transactions()
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        assert not unread(consumer), "an empty topic has nothing unread"

        producer.begin_transaction()
        for i in range(3):
            producer.send(topic, key=b"k", value=b"%d" % i)
        producer.flush(30)
        time.sleep(1)
        assert not unread(consumer), "an open transaction's records are not there for a committed reader"
        producer.commit_transaction()  # its markers, and so the end offset, follow a moment later
        wait_until(lambda: unread(consumer), 10, "the committed records to count as unread", every_s=0.1)

        got: list[bytes] = []

        def read_all() -> bool:
            got.extend(r.value for batch in consumer.poll(timeout_ms=500).values() for r in batch)
            return not unread(consumer)

        wait_until(read_all, 30, "the consumer to read everything", every_s=0.1)
        assert got == [b"0", b"1", b"2"]
    finally:
        producer.close(5)
        consumer.close()


class _Records:
    """What a Kafka consumer hands the feed: a record with its topic, partition, offset, key and value."""

    def __init__(self, topic: str) -> None:
        self.topic, self.offset = topic, 0

    def __call__(self, value: bytes) -> object:
        self.offset += 1
        return type("Record", (), {"topic": self.topic, "partition": 0, "offset": self.offset,
                                   "key": b"1", "value": value})()


def _trade(interval: int) -> bytes:
    t = Trade(trade_id=trade_id(interval, "bid0", "offer0"), interval_start_ms=interval, buyer="buyer0",
              seller="seller0", bid_id="bid0", offer_id="offer0", wh=100, price=2_500, grid_fee=150)
    return t.model_dump_json().encode()


def test_an_unproven_interval_waits_while_records_are_unread(live) -> None:
    s = live.model_copy(update={"settlement": live.settlement.model_copy(update={"evidence_wait_s": 0.2})})
    behind = [True]
    feed = Feed(None, s, behind=lambda: behind[0])  # type: ignore[arg-type]  # no settler: nothing proven
    record = _Records(s.kafka.trades_topic)
    try:
        feed.take(record(_trade(5_000_000)))
        time.sleep(0.3)
        feed.settle_due()
        assert 5_000_000 in feed.open, "its summary and orders may be in what is still unread"
        behind[0] = False
        feed.settle_due()
        assert 5_000_000 in feed.open, "the wait starts again once the feed has caught up"
        time.sleep(0.3)
        feed.settle_due()
        assert 5_000_000 not in feed.open, "caught up and still no summary: given up"
    finally:
        feed.close()
