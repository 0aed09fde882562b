"""A participant's own bidding agent: its devices' forecasts in, its signed orders out.

`citygrid market bid --participant NAME --key-file FILE` runs as the participant (it may run on the
participant's own machine): it holds that one participant's order key and nobody else's, reads the
forecasts topic under its own consumer group, keeps the net position of the participant's devices per
interval with its P10/P50/P90 (`ForecastPositions`), and publishes what the order rule trades of it
(citygrid.stream.bidding: offer what it is confident to deliver, bid for what it is confident to need;
a participant with a battery first plans it from the same forecasts) as an order signed with its key,
keyed by interval. Every revision carries a higher nonce (microseconds of the wall clock, and never
below the last one + 1), so the market books the latest and refuses a replay of an older one; each
order expires when its interval's gate closes.

Crash safety: offsets are committed after the orders they led to are flushed, so a restarted bidder
re-reads at most the uncommitted forecasts and re-signs them with newer nonces, which only revises
orders to what they already were.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import structlog
from prometheus_client import Counter

from citygrid import kafka_clients
from citygrid.errors import ConfigError
from citygrid.market import Order
from citygrid.participants import Participants
from citygrid.records import Forecast, RecordRejected
from citygrid.settings import CitygridSettings
from citygrid.signed_orders import SignedOrder
from citygrid.signing import DeviceKey
from citygrid.stream.market.errors import BidderKeyError
from citygrid.stream.market.exchange import order_key
from citygrid.stream.market.participants import ForecastPositions
from citygrid.topics import bidder_group

log = structlog.get_logger(__name__)

SIGNED = Counter("citygrid_market_bidder_orders_total", "Orders a participant's bidder signed and sent")


def load_order_key(participants: Participants, name: str, key_file: Path) -> DeviceKey:
    """The participant's order key from its key file, once it is the key it is enrolled with."""
    try:
        key = DeviceKey.load(key_file)
    except ConfigError as exc:
        raise BidderKeyError(f"{exc}; `citygrid market enrol` writes the key file") from exc
    if key.public_key != participants.get(name).order_public_key:
        raise BidderKeyError(f"{key_file} is not {name}'s enrolled order key; re-enrol with "
                             "`citygrid market enrol` or use the key file it wrote")
    return key


class Bidder:
    """Turns one participant's forecasts into its signed, numbered orders."""

    def __init__(self, s: CitygridSettings, name: str, key: DeviceKey) -> None:
        participants = Participants.load(s.paths.participants)
        self.name = name
        self.key = key
        self.positions = ForecastPositions(name, participants.get(name), s.market.interval_s)
        self.interval_ms = s.market.interval_s * 1000
        self.gate_ms = int(s.market.gate_s * 1000)
        self.last_nonce = 0

    def _nonce(self) -> int:
        self.last_nonce = max(self.last_nonce + 1, time.time_ns() // 1000)
        return self.last_nonce

    def on_forecast(self, raw: bytes) -> SignedOrder | None:
        """The signed order a forecast record leads to; None if it is not ours, balanced or unreadable."""
        try:
            forecast = Forecast.decode(raw)
        except RecordRejected:
            return None  # the topic is shared: other records are none of the bidder's business
        position = self.positions.update(forecast)
        if position is None:
            return None
        start, net_wh = position
        order: Order | None = self.positions.order(start, net_wh, self._nonce(),
                                                   start + self.interval_ms + self.gate_ms)
        if order is None:
            return None
        return SignedOrder.sign(order, self.key)

    def run(self, s: CitygridSettings, stop: threading.Event) -> None:
        """Consume forecasts and publish signed orders until `stop` is set."""
        consumer = kafka_clients.consumer(s.kafka, s.kafka.forecasts_topic,
                                          group_id=bidder_group(s.kafka, self.name),
                                          enable_auto_commit=False, auto_offset_reset="earliest")
        producer = kafka_clients.producer(s.kafka, acks="all")
        try:
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=200)
                for records in polled.values():
                    for rec in records:
                        signed = self.on_forecast(rec.value or b"")
                        if signed is not None:
                            start = signed.unverified_order().interval_start_ms
                            producer.send(s.kafka.orders_topic, key=order_key(start), value=signed.encode())
                            SIGNED.inc()
                if polled:
                    producer.flush(30)
                    consumer.commit()
                    self.positions.forget_before(int(time.time() * 1000) - 4 * self.interval_ms)
        finally:
            consumer.close()
            producer.close(5)
