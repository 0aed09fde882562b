"""The market on real Faust workers and real Kafka: signed orders in; the auction's trades, the cleared
book and the interval's summary out; forged, unsigned, replayed and late orders dead-lettered with their
reason; and two workers, one killed mid-interval, clear the same trades as one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from market_support import Market, make_market, metric, start_worker
from support import wait_until

from citygrid.devtools.processes import stop
from citygrid.interval_records import IntervalSummary, summarize
from citygrid.market import Mechanism, Order, Side, Trade
from citygrid.records import DeadLetter
from citygrid.signed_orders import SignedOrder
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.stream.market import clear
from citygrid.stream.market.exchange import order_key
from citygrid.topics import cleared_orders_topic, dead_letters_topic, interval_summaries_topic, market_topics

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]

NAMES = ["house1", "house2", "school", "shop", "wind"]


def _book(m: Market, start: int) -> list[tuple[Order, bytes]]:
    rows = [("house1", Side.BID, 700, 3_500_000), ("house2", Side.BID, 400, 1_000_000),
            ("school", Side.OFFER, 900, 600_000), ("wind", Side.OFFER, 300, 2_800_000),
            ("shop", Side.BID, 250, 3_000_000)]
    return [m.order(who, side, wh, lim, start) for who, side, wh, lim in rows]


def _trades(m: Market, start: int) -> list[Trade]:
    return [t for t in (Trade.model_validate_json(r.value)
                        for r in read_topic(m.s.kafka, m.s.kafka.trades_topic, 5))
            if t.interval_start_ms == start]


def _expected(m: Market, start: int, signed: list[bytes]) -> tuple[list[Trade], IntervalSummary]:
    book = [SignedOrder.decode(raw) for raw in signed]
    mechanism = Mechanism(m.s.market.mechanism)
    result = clear([s.unverified_order() for s in book], m.s.market.grid_fee, mechanism, start)
    from citygrid.interval_records import ClearingPrice

    price = ClearingPrice.of(result.clearing_price, result.certificate)
    return result.trades, summarize(start, Mechanism(m.s.market.mechanism), book, price, result.trades)


def _next_start(m: Market, lead_intervals: int = 2) -> int:
    now = int(time.time() * 1000)
    return now - now % m.interval_ms + lead_intervals * m.interval_ms


def test_signed_orders_clear_and_forged_unsigned_replayed_and_late_ones_are_dead_lettered(
        live, tmp_path: Path) -> None:
    m = make_market(live, NAMES)
    s = m.s
    ensure_topics(s.kafka, market_topics(s.kafka))
    worker, port = start_worker(s, tmp_path / "worker.log")
    try:
        # The market's time starts with its ticks: once each partition has seen some, old orders are late.
        wait_until(lambda: metric(port, "citygrid_market_ticks_total") >= 3 * s.kafka.partitions, 60,
                   "the market's ticks", every_s=0.5)
        start = _next_start(m, 3)
        book = _book(m, start)
        forged = m.order("wind", Side.OFFER, 5_000, 0, start, signer="shop")[1]  # shop signs in wind's name
        unsigned = book[0][0].model_copy(update={"order_id": "house1:x"}).model_dump_json().encode()
        stale = m.order("house2", Side.OFFER, 5_000, 0, start - 8 * m.interval_ms)[1]
        m.send([m.keyed(raw, start) for _, raw in book]
               + [m.keyed(forged, start), m.keyed(unsigned, start), m.keyed(book[0][1], start),  # a replay
                  (order_key(start - 8 * m.interval_ms), stale)])
        expected, summary = _expected(m, start, [raw for _, raw in book])
        assert expected, "the chosen book must produce trades"
        wait_until(lambda: len(_trades(m, start)) >= len(expected), 90, "the interval's trades", every_s=0.5)
        time.sleep(2 * s.market.interval_s)  # later ticks must not add to or repeat the interval
        trades = _trades(m, start)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        stop(worker)
    assert sorted(trades, key=lambda t: t.trade_id) == sorted(expected, key=lambda t: t.trade_id)
    summaries = [IntervalSummary.model_validate_json(r.value)
                 for r in read_topic(s.kafka, interval_summaries_topic(s.kafka))]
    assert [x for x in summaries if x.interval_start_ms == start] == [summary]
    published = sorted(r.value for r in read_topic(s.kafka, cleared_orders_topic(s.kafka))
                       if r.key == order_key(start))
    assert published == sorted(raw for _, raw in book)
    letters = [DeadLetter.decode(r.value)
               for r in read_topic(s.kafka, dead_letters_topic(s.kafka.orders_topic, "worker"))]
    assert sorted(d.reason for d in letters) == ["bad_signature", "late", "replayed", "unsigned"]
    assert {d.reason: d for d in letters}["bad_signature"].payload() == forged


def test_two_workers_one_killed_mid_interval_clear_the_same_trades_as_one(live, tmp_path: Path) -> None:
    m = make_market(live, NAMES, interval_s=20)
    s = m.s
    ensure_topics(s.kafka, market_topics(s.kafka))
    workers = [start_worker(s, tmp_path / f"worker{i}.log", tmp_path / f"w{i}") for i in range(2)]
    try:
        wait_until(lambda: all(metric(p, "python_info") > 0 for _, p in workers), 60, "both workers")
        time.sleep(8)  # both in the group, the partitions shared out
        start = _next_start(m, 1)
        book = _book(m, start)
        m.send([m.keyed(raw, start) for _, raw in book[:3]])
        wait_until(lambda: any(metric(p, "citygrid_market_orders_total") >= 3 for _, p in workers), 60,
                   "the interval's owner to book the first orders")
        owner = next(i for i, (_, p) in enumerate(workers) if metric(p, "citygrid_market_orders_total") >= 3)
        workers[owner][0].kill()  # mid-interval: no graceful shutdown, its table is all the survivor gets
        workers[owner][0].wait()
        assert int(time.time() * 1000) < start + m.interval_ms, "the kill must come before the interval ends"
        m.send([m.keyed(raw, start) for _, raw in book[3:]])
        expected, _ = _expected(m, start, [raw for _, raw in book])
        wait_until(lambda: len(_trades(m, start)) >= len(expected), 150, "the survivor's trades", every_s=1)
        survivor = workers[1 - owner][0]
        assert survivor.poll() is None, (tmp_path / f"worker{1 - owner}.log").read_text()[-3000:]
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                stop(proc)
    trades = _trades(m, start)
    assert {t.trade_id: t for t in trades} == {t.trade_id: t for t in expected}
