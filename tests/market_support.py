"""The market in tests: enrolled participants with their own order keys, signed orders, market workers on
the real Kafka (imported as `market_support`, beside `support`)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support import as_kafka_service, free_port

from citygrid import kafka_clients
from citygrid.devtools.processes import spawn
from citygrid.interval_records import PublishedInterval
from citygrid.market import Order, Side
from citygrid.participants import Participant, Participants
from citygrid.settings import CitygridSettings
from citygrid.signed_orders import SignedOrder
from citygrid.signing import DeviceKey
from citygrid.stream.market.exchange import order_key

ADDRESS = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


@dataclass
class Market:
    """A test's market: its settings, its participants' order keys, and their signed orders."""

    s: CitygridSettings
    keys: dict[str, DeviceKey]
    interval_ms: int

    def order(self, who: str, side: Side, wh: int, limit: int, start: int, nonce: int = 1,
              signer: str | None = None) -> tuple[Order, bytes]:
        order = Order(order_id=f"{who}:{start}:{side.value}", participant=who, side=side, wh=wh, limit=limit,
                      interval_start_ms=start, nonce=nonce, expires_ms=start + 3 * self.interval_ms)
        return order, SignedOrder.sign(order, self.keys[signer or who]).encode()

    def send(self, records: list[tuple[bytes, bytes]]) -> None:
        """Publish (key, value) records to the orders topic as the participants' principal."""
        producer = kafka_clients.producer(as_kafka_service(self.s, "participant").kafka, acks="all")
        for key, value in records:
            producer.send(self.s.kafka.orders_topic, key=key, value=value)
        producer.flush(30)
        producer.close(5)

    def keyed(self, raw: bytes, start: int) -> tuple[bytes, bytes]:
        return order_key(start), raw


def make_market(live: CitygridSettings, names: list[str], interval_s: int = 4,
                addresses: dict[str, str] | None = None) -> Market:
    """Settings of a short-interval market with `names` enrolled, each with an order key of its own."""
    keys = {n: DeviceKey.generate() for n in names}
    s = live.model_copy(update={"market": live.market.model_copy(update={
        "interval_s": interval_s, "gate_s": 1.0, "tick_s": 0.3})})
    Participants({n: Participant(address=(addresses or {}).get(n, ADDRESS), order_key=k.public_key.hex(),
                                 bus=f"bus-{i % 2}") for i, (n, k) in enumerate(keys.items())}
                 ).save(s.paths.participants)
    return Market(s, keys, interval_s * 1000)


def start_worker(s: CitygridSettings, log: Path, data_dir: Path | None = None):
    """A stream worker as its own process and Kafka principal; (process, its metrics port)."""
    port = free_port()
    (data_dir or s.paths.data_dir).mkdir(parents=True, exist_ok=True)
    ws = as_kafka_service(s, "worker").model_copy(update={
        "metrics_port": port,
        "paths": s.paths.model_copy(update={"data_dir": data_dir or s.paths.data_dir}),
    })
    # Faust's own setting (it reads its environment): a killed worker's partitions move after 10 s, not 60.
    env = {**ws.as_env(), "BROKER_SESSION_TIMEOUT": "10"}
    return spawn(["stream", "worker"], env, log), port


def metric(port: int, name: str) -> float:
    """A worker's metric (summed over labels), 0 if it is not exported yet or the worker is gone."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith(name + "_created")
               and line[len(name)] in " {")


def backed_interval(interval: int, pairs: list[tuple[str, str, int]], keys: dict[str, DeviceKey],
                    price: int, grid_fee: int) -> PublishedInterval:
    """An interval as the market would publish it: each buyer's bid and each seller's offer signed by
    its own key (limits exactly covering `price` and `grid_fee`), the trades `pairs` (buyer, seller, Wh)
    between them, and the summary committing to both."""
    from collections import defaultdict

    from citygrid.interval_records import ClearingPrice, summarize
    from citygrid.market import Mechanism, Trade, trade_id

    bought, sold = defaultdict(int), defaultdict(int)
    for b, s_, wh in pairs:
        bought[b] += wh
        sold[s_] += wh

    def signed(who: str, side: Side, wh: int, limit: int) -> SignedOrder:
        order = Order(order_id=f"{who}:{interval}:{side.value}", participant=who, side=side, wh=wh,
                      limit=limit, interval_start_ms=interval, nonce=1, expires_ms=interval + 10**9)
        return SignedOrder.sign(order, keys[who])

    orders = [signed(b, Side.BID, wh, price) for b, wh in bought.items()]
    orders += [signed(s_, Side.OFFER, wh, price - grid_fee) for s_, wh in sold.items()]
    trades = [Trade(trade_id=trade_id(interval, f"{b}:{interval}:bid", f"{s_}:{interval}:offer"),
                    interval_start_ms=interval, buyer=b, seller=s_, bid_id=f"{b}:{interval}:bid",
                    offer_id=f"{s_}:{interval}:offer", wh=wh, price=price, grid_fee=grid_fee)
              for b, s_, wh in pairs]
    summary = summarize(interval, Mechanism.PAY_AS_CLEAR, orders, ClearingPrice(uniform=price), trades)
    return PublishedInterval(summary=summary, orders=orders, trades=trades)


def publish_interval(s: CitygridSettings, published: PublishedInterval,
                     extra_trades: list[bytes] = ()) -> None:
    """Write a published interval to the market's output topics (as the admin: tests play the market)."""
    from citygrid.topics import cleared_orders_topic, interval_summaries_topic

    key = str(published.summary.interval_start_ms).encode()
    producer = kafka_clients.producer(s.kafka, acks="all")
    for o in published.orders:
        producer.send(cleared_orders_topic(s.kafka), key=key, value=o.encode())
    for t in [t.model_dump_json().encode() for t in published.trades] + list(extra_trades):
        producer.send(s.kafka.trades_topic, key=key, value=t)
    producer.send(interval_summaries_topic(s.kafka), key=key, value=published.summary.encode())
    producer.flush(30)
    producer.close(5)
