"""Trades on the real trades topic → the settlement feed → paid on the real dev chain exactly once,
even when the feed is killed after settling and before committing its Kafka offsets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from market_support import backed_interval, publish_interval
from support import exit_code, wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.ledger.settlement_history import expected_transfers, read_back
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.stream.kafka_topics import ensure_topics
from citygrid.topics import market_topics

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

FIRST, SECOND = 3_000_000, 3_900_000


def test_feed_settles_each_interval_once_across_a_kill_before_commit(
        accounts_factory, settler_settings, child_env, committed_offsets,
        tmp_path: Path) -> None:
    acc = accounts_factory(buyers=2, sellers=2)
    s = settler_settings(acc)

    def committed() -> int:
        """Records of the trades topic the settler's group has committed as done."""
        return committed_offsets(s, s.kafka.trades_topic, s.settlement.group)

    ensure_topics(s.kafka, market_topics(s.kafka))
    first_book = backed_interval(FIRST, [("buyer0", "seller0", 1500), ("buyer1", "seller0", 200),
                                         ("buyer1", "seller1", 700)], acc.order_keys, 2_500_000, 150_000)
    second_book = backed_interval(SECOND, [("buyer0", "seller1", 900)], acc.order_keys, 2_500_000, 150_000)
    first, second = first_book.trades, second_book.trades
    before = acc.balances()
    store = SettlementStore(s.paths.settlement_store)

    publish_interval(s, first_book)
    # Killed right after the first interval is settled on chain, before the feed commits its offsets:
    # the restarted feed reads those trades again and must not pay them twice.
    log1 = tmp_path / "feed1.log"
    killed = spawn(["ledger", "settle"], child_env(settler_settings(acc, crash_at="settled")), log1)
    try:
        assert exit_code(killed, 90, log1) == -9, log1.read_text()[-3000:]
    finally:
        if killed.poll() is None:
            killed.kill()
    assert store.get(FIRST).status == "settled"
    assert committed() == 0, "the killed feed must not have committed, or this tests no re-read"

    publish_interval(s, second_book)
    log2 = tmp_path / "feed2.log"
    feed = spawn(["ledger", "settle"], child_env(s), log2)
    try:
        wait_until(lambda: (r := store.get(SECOND)) is not None and r.status == "settled", 90,
              "the second interval to settle")
        time.sleep(3)  # the re-read first interval has been handed over again by now
        assert feed.poll() is None, log2.read_text()[-3000:]
    finally:
        assert stop(feed) == 0, log2.read_text()[-3000:]

    assert committed() == len(first) + len(second), "a cleanly stopped feed commits what it settled"
    after = acc.balances()
    owed = {n: 0 for n in acc.names}
    for t in first + second:
        owed[t.buyer] -= t.buyer_pays
        owed[t.seller] += t.seller_receives
        owed["grid"] += t.fee_total
    assert {n: after[n] - before[n] for n in acc.names} == owed

    addresses = {n: acc.address(n) for n in acc.names}
    for interval, trades in ((FIRST, first), (SECOND, second)):
        record = store.get(interval)
        assert record.status == "settled" and sorted(t.trade_id for t in record.trades) == sorted(
            t.trade_id for t in trades)
        back = read_back(acc.chain, record)
        assert back.problem(record, expected_transfers(trades, addresses, addresses["grid"])) is None
