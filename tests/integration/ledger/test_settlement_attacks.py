"""Records written straight to the real topics the settler reads: a forged trade paying an attacker, a
trade no signed orders back, a malformed one, an interval with no summary, and an order not signed by
its participant are all dead-lettered with their reason, and the genuine trades still settle (real
Kafka, real dev chain, the settler as its own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from market_support import backed_interval, publish_interval
from substrateinterface import Keypair
from support import wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.ledger.settlement_history import read_back
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Side, Trade, trade_id
from citygrid.records import DeadLetter
from citygrid.signed_orders import SignedOrder
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.topics import cleared_orders_topic, dead_letters_topic, market_topics

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

FORGED, GENUINE = 5_000_000, 5_900_000


def _trade(interval: int, buyer: str, seller: str, wh: int) -> Trade:
    bid, offer = f"{buyer}:{interval}:bid", f"{seller}:{interval}:offer"
    return Trade(trade_id=trade_id(interval, bid, offer), interval_start_ms=interval, buyer=buyer,
                 seller=seller, bid_id=bid, offer_id=offer, wh=wh, price=2_000_000, grid_fee=100_000)


def test_forged_unbacked_and_malformed_records_are_dead_lettered_and_the_genuine_trades_settle(
        accounts_factory, publish_trades, settler_settings, child_env, committed_offsets,
        tmp_path: Path) -> None:
    acc = accounts_factory(buyers=2, sellers=1)
    s = settler_settings(acc)
    ensure_topics(s.kafka, market_topics(s.kafka))
    attacker = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    attacker_address = acc.chain.address(attacker)
    genuine = backed_interval(GENUINE, [("buyer0", "seller0", 1200)], acc.order_keys, 2_000_000, 100_000)
    # 500 of a buyer's units to the attacker's address, as the attack did, in the genuine interval.
    to_attacker = _trade(GENUINE, "buyer0", attacker_address, 2_500_000)
    # Between enrolled participants, but buyer1 never signed a bid: nothing backs it.
    unbacked = _trade(GENUINE, "buyer1", "seller0", 700)
    malformed = json.dumps({**json.loads(_trade(GENUINE, "buyer0", "seller0", 1).model_dump_json()),
                            "wh": 2**64}).encode()
    # An order in buyer1's name signed by seller0's key, slipped into the published book.
    forged_order = SignedOrder.sign(genuine.orders[0].unverified_order().model_copy(update={
        "participant": "buyer1", "order_id": f"buyer1:{GENUINE}:bid", "side": Side.BID}),
        acc.order_keys["seller0"])
    before = acc.balances()

    publish_interval(s, genuine, [to_attacker.model_dump_json().encode(), unbacked.model_dump_json().encode(),
                                  malformed, b"\x00not json"])
    publish_trades(s, [(FORGED, _trade(FORGED, "buyer0", "seller0", 900).model_dump_json().encode())])
    from citygrid import kafka_clients

    producer = kafka_clients.producer(s.kafka, acks="all")
    producer.send(cleared_orders_topic(s.kafka), key=str(GENUINE).encode(), value=forged_order.encode())
    producer.flush(30)
    producer.close(5)
    store = SettlementStore(s.paths.settlement_store)
    log = tmp_path / "settler.log"
    feed = spawn(["ledger", "settle"], child_env(s), log)
    try:
        wait_until(lambda: (r := store.get(GENUINE)) is not None and r.status == "settled", 90,
                   "the genuine trade to settle")
        wait_until(lambda: committed_offsets(s, s.kafka.trades_topic, s.settlement.group) == 6, 60,
                   "the feed to commit past every trade record, the bad ones included")
        assert feed.poll() is None, log.read_text()[-3000:]
    finally:
        assert stop(feed) == 0, log.read_text()[-3000:]

    assert store.get(FORGED) is None
    record = store.get(GENUINE)
    assert record.trades == genuine.trades
    assert read_back(acc.chain, record).problem(record) is None  # its remark commits root, price, trades
    after = acc.balances()
    assert acc.chain.asset_balance(acc.asset_id, attacker_address) == 0
    assert after["buyer0"] - before["buyer0"] == -genuine.trades[0].buyer_pays
    assert after["seller0"] - before["seller0"] == genuine.trades[0].seller_receives
    assert after["buyer1"] == before["buyer1"]

    letters = [DeadLetter.decode(r.value)
               for r in read_topic(s.kafka, dead_letters_topic(s.kafka.trades_topic, "settler"))]
    assert sorted(d.reason for d in letters) == ["malformed", "malformed", "unbacked", "unbacked_interval",
                                                 "unknown_participant"]
    by_reason = {d.reason: d for d in letters}
    assert attacker_address in by_reason["unknown_participant"].error
    assert by_reason["unknown_participant"].payload() == to_attacker.model_dump_json().encode()
    order_letters = [DeadLetter.decode(r.value) for r in read_topic(
        s.kafka, dead_letters_topic(cleared_orders_topic(s.kafka), "settler"))]
    assert [(d.reason, d.payload()) for d in order_letters] == [("bad_signature", forged_order.encode())]
