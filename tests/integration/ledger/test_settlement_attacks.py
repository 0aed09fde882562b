"""Trade records written straight to the real trades topic: a forged trade paying an attacker is not
settled and is dead-lettered; a malformed one is dead-lettered and the genuine trade after it settles
(real Kafka, real dev chain, the settler as its own process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from substrateinterface import Keypair
from support import wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Trade, trade_id
from citygrid.records import DeadLetter
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.topics import dead_letters_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

FORGED, GENUINE = 5_000_000, 5_900_000


def _trade(interval: int, buyer: str, seller: str, wh: int) -> Trade:
    return Trade(trade_id=trade_id(interval, f"{buyer}-bid", f"{seller}-offer"), interval_start_ms=interval,
                 buyer=buyer, seller=seller, bid_id=f"{buyer}-bid", offer_id=f"{seller}-offer", wh=wh,
                 price=2_000_000, grid_fee=100_000)


def test_forged_and_malformed_trades_are_dead_lettered_and_the_genuine_one_settles(
        accounts_factory, publish_trades, settler_settings, child_env, committed_offsets,
        tmp_path: Path) -> None:
    acc = accounts_factory(buyers=1, sellers=1)
    s = settler_settings(acc)
    ensure_topics(s.kafka, [s.kafka.trades_topic])
    attacker = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    attacker_address = acc.chain.address(attacker)
    # 500 of the buyer's units to the attacker's address, as the attack did.
    forged = _trade(FORGED, "buyer0", attacker_address, 2_500_000)
    malformed = json.dumps({**json.loads(_trade(GENUINE, "buyer0", "seller0", 1).model_dump_json()),
                            "wh": 2**64}).encode()
    genuine = _trade(GENUINE, "buyer0", "seller0", 1200)
    before = acc.balances()
    attacker_before = acc.chain.asset_balance(acc.asset_id, attacker_address)

    publish_trades(s, [(FORGED, forged.model_dump_json().encode()), (GENUINE, malformed),
                 (GENUINE, b"\x00not json"), (GENUINE, genuine.model_dump_json().encode())])
    store = SettlementStore(s.paths.settlement_store)
    log = tmp_path / "settler.log"
    feed = spawn(["ledger", "settle"], child_env(s), log)
    try:
        wait_until(lambda: (r := store.get(GENUINE)) is not None and r.status == "settled", 90,
                   "the genuine trade to settle")
        wait_until(lambda: committed_offsets(s, s.kafka.trades_topic, s.settlement.group) == 4, 30,
                   "the feed to commit past every record, the bad ones included")
        assert feed.poll() is None, log.read_text()[-3000:]
    finally:
        assert stop(feed) == 0, log.read_text()[-3000:]

    assert store.get(FORGED) is None
    assert [t.trade_id for t in store.get(GENUINE).trades] == [genuine.trade_id]
    after = acc.balances()
    assert acc.chain.asset_balance(acc.asset_id, attacker_address) == attacker_before == 0
    assert after["buyer0"] - before["buyer0"] == -genuine.buyer_pays
    assert after["seller0"] - before["seller0"] == genuine.seller_receives

    letters = [DeadLetter.decode(r.value)
               for r in read_topic(s.kafka, dead_letters_topic(s.kafka.trades_topic, "settler"))]
    assert sorted(d.reason for d in letters) == ["malformed", "malformed", "unknown_participant"]
    by_reason = {d.reason: d for d in letters}
    assert attacker_address in by_reason["unknown_participant"].error
    assert by_reason["unknown_participant"].payload() == forged.model_dump_json().encode()
    assert all(d.source.startswith(f"{s.kafka.trades_topic}/") for d in letters)
