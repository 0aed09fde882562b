"""The market's topics, table, agent and clock on the stream app: signed orders in; trades, the cleared
book and each interval's summary out.

`register_market(app, settings)` is called by `citygrid.stream.app.make_app`. Participants' bidders
(`citygrid market bid`) publish signed orders keyed by interval; the one agent books them in the
`market-books` table of the partition they arrive on, and every worker's timer writes a sealed tick
to every orders partition, which the partition's owner handles in log order: a tick past an
interval's gate clears its book (see `exchange`). When an interval clears, its signed orders (one
record each), its trades and its summary are published, keyed by interval, in that order; a worker
killed before it marked the book cleared lets its successor publish the same records again, which
the settler and the audit recognise by their deterministic ids and hashes.

Each partition's state records the offset of the last orders record it took, so every record is taken
into the books once and in log order: one the state already holds (redelivered after a takeover) is
passed over, and when the consumer hands over a record past a gap, the records in the gap are read from
the partition directly and taken first. faust-streaming 0.15 can drop records fetched while a partition
it was just assigned is still being recovered (seen here: a survivor of a killed worker never booked the
orders sent right after the kill); without this, those orders would silently miss their book.
"""

from __future__ import annotations

import asyncio
import time

import faust
import structlog
from prometheus_client import Counter

from citygrid.participants import Participants
from citygrid.settings import CitygridSettings
from citygrid.stream.dead_letters import WORKER, record_source, send_dead_record
from citygrid.stream.kafka_topics import read_partition
from citygrid.stream.learning import state_key
from citygrid.stream.market.auction import MarketPlan
from citygrid.stream.market.book import BOOK_TABLE, Books, MarketRules, unseen
from citygrid.stream.market.exchange import ClearedInterval, Refused, take_record, tick_record
from citygrid.topics import cleared_orders_topic, dead_letters_topic, interval_summaries_topic

log = structlog.get_logger(__name__)
RECOVERED = Counter("citygrid_market_records_recovered_total",
                    "Orders records the consumer skipped, read back from the partition and taken in order")


def market_rules(s: CitygridSettings) -> MarketRules:
    """The rules every worker books and clears by, from the settings and the participants registry."""
    m = s.market
    participants = Participants.load(s.paths.participants)
    return MarketRules(interval_ms=m.interval_s * 1000, gate_ms=int(m.gate_s * 1000),
                       partitions=s.kafka.partitions, state_key=state_key(s.stream),
                       participants=participants, plan=MarketPlan.from_settings(m, participants))


def register_market(app: faust.App, s: CitygridSettings) -> Books:
    """Declare the market's topics, table, agent and tick timer on `app`; return its books."""
    m, k = s.market, s.kafka

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes)

    orders, trades = topic(k.orders_topic), topic(k.trades_topic)
    book_out, summaries = topic(cleared_orders_topic(k)), topic(interval_summaries_topic(k))
    dead = topic(dead_letters_topic(k.orders_topic, WORKER))
    rules = market_rules(s)
    books = Books(app.Table(BOOK_TABLE, key_type=bytes, value_type=bytes), rules.state_key)

    async def publish(c: ClearedInterval) -> None:
        key = str(c.summary.interval_start_ms).encode()
        for signed in c.orders:
            await book_out.send(key=key, value=signed.encode())
        for t in c.trades:
            await trades.send(key=key, value=t.model_dump_json().encode())
        await summaries.send(key=key, value=c.summary.encode())

    async def take(partition: int, offset: int, key: object, value: object) -> None:
        source = record_source(k.orders_topic, partition, offset)
        try:
            cleared = take_record(books, rules, partition, key, value, m)  # type: ignore[arg-type]
        except Refused as exc:
            cleared = []
            await send_dead_record(dead, "market", key, value, source, exc.reason, str(exc))
        except Exception as exc:  # one record must never stop the market
            cleared = []
            await send_dead_record(dead, "market", key, value, source, "unprocessable", repr(exc))
        books.taken(partition, offset)
        for c in cleared:
            await publish(c)

    async def missed(partition: int, gap: range) -> list:
        records = await asyncio.to_thread(read_partition, k, k.orders_topic, partition, gap.start, gap.stop)
        RECOVERED.inc(len(records))
        log.warning("market_records_recovered", partition=partition, first=gap.start, last=gap.stop - 1,
                    records=len(records))
        return records

    @app.agent(orders)
    async def market(stream: faust.Stream) -> None:
        async for event in stream.events():
            partition, offset = event.message.partition, event.message.offset
            gap = unseen(books.clock(partition).offset, offset)
            if gap is None:
                continue  # already in the books
            for r in await missed(partition, gap) if gap else []:
                await take(partition, r.offset, r.key, r.value)
            await take(partition, offset, event.key, event.value)

    @app.timer(interval=m.tick_s)
    async def tick() -> None:
        record = tick_record(rules.state_key, int(time.time() * 1000))
        for partition in range(k.partitions):
            await orders.send(key=b"tick", value=record, partition=partition)

    return books
