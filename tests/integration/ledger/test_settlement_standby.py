"""An active settler and its standby as two real processes (real Kafka, dev chain, one shared store):
the standby pays nothing while the active runs; the active is killed right after handing an interval's
signed extrinsic to the chain, and the standby takes over, finds those bytes instead of signing again,
and settles the next interval: every trade paid exactly once."""

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

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]

FIRST, SECOND = 5_000_000, 5_900_000


def test_the_standby_settler_takes_over_and_pays_each_interval_once(
        accounts_factory, settler_settings, child_env, tmp_path: Path) -> None:
    acc = accounts_factory(buyers=2, sellers=2, pas=50)
    s = settler_settings(acc)
    ensure_topics(s.kafka, market_topics(s.kafka))
    first = backed_interval(FIRST, [("buyer0", "seller0", 1100), ("buyer1", "seller1", 600)],
                            acc.order_keys, 2_500_000, 150_000)
    second = backed_interval(SECOND, [("buyer1", "seller0", 400)], acc.order_keys, 2_500_000, 150_000)
    before = acc.balances()
    store = SettlementStore(s.paths.settlement_store)

    # The active kills itself right after submitting (its extrinsic is in the pool, maybe in a block,
    # and its store says "signed"): the case where signing again would pay twice.
    active = spawn(["ledger", "settle"], child_env(settler_settings(acc, crash_at="submitted")),
                   tmp_path / "active.log")
    time.sleep(4)  # the active joins first
    standby = spawn(["ledger", "settle"], child_env(s), tmp_path / "standby.log")
    try:
        time.sleep(4)  # both in the group: the standby holds no partition
        publish_interval(s, first)
        active_log = tmp_path / "active.log"
        assert exit_code(active, 90, active_log) == -9, active_log.read_text()[-3000:]
        assert store.get(FIRST).status in ("signed", "settled")
        publish_interval(s, second)
        wait_until(lambda: all((r := store.get(i)) is not None and r.status == "settled"
                               for i in (FIRST, SECOND)), 120, "the standby to settle both intervals")
        assert standby.poll() is None, (tmp_path / "standby.log").read_text()[-3000:]
    finally:
        if active.poll() is None:
            active.kill()
        assert stop(standby) == 0, (tmp_path / "standby.log").read_text()[-3000:]

    log = (tmp_path / "standby.log").read_text()
    assert "settler_active" in log
    owed = {n: 0 for n in acc.names}
    for t in first.trades + second.trades:
        owed[t.buyer] -= t.buyer_pays
        owed[t.seller] += t.seller_receives
        owed["grid"] += t.fee_total
    after = acc.balances()
    assert {n: after[n] - before[n] for n in acc.names} == owed  # paid once, not twice
    addresses = {n: acc.address(n) for n in acc.names}
    for interval, book in ((FIRST, first), (SECOND, second)):
        record = store.get(interval)
        back = read_back(acc.chain, record)
        assert back.problem(record, expected_transfers(book.trades, addresses, addresses["grid"])) is None
