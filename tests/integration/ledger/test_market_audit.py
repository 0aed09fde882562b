"""End to end on the real Kafka and dev chain: signed orders from 20 participants on 2 feeders are cleared
by the market worker, settled by the settler from what the market published, and `citygrid market audit`
re-derives the trades from the signed orders and finds the chain's payments right; a forged order is
refused with its reason; a tampered stored order or trade is caught by the audit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from market_support import Market, metric, start_worker
from support import wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.interval_records import IntervalSummary
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Order, Side
from citygrid.participants import Participants
from citygrid.records import DeadLetter
from citygrid.signed_orders import SignedOrder
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.stream.market.exchange import order_key
from citygrid.stream.market.grid import MarketGrid
from citygrid.topics import dead_letters_topic, interval_summaries_topic, market_topics

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[3]
INTERVAL_S = 6
GRID = "1-LV-rural1--0-sw"  # SimBench's rural LV grid: its real feeders, transformer and wire limits


def _two_feeders(code: str) -> list[str]:
    """The buses of the grid's two largest LV feeders, interleaved, so neighbours sit on different feeders."""
    grid = MarketGrid.from_simbench(code, INTERVAL_S)
    by_feeder: dict[str, list[str]] = defaultdict(list)
    for bus in grid.buses:
        feeders = [a for a in grid.ancestors(grid.leaf(bus)) if grid.node(a).level == "feeder"]
        if feeders and grid.node(feeders[0]).capacity_wh is not None:
            by_feeder[feeders[0]].append(bus)
    first, second = sorted(by_feeder.values(), key=len, reverse=True)[:2]
    return [b for pair in zip(first, second, strict=False) for b in pair]


def _audit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citygrid", "market", "audit", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _orders(acc, start: int) -> list[bytes]:
    """Ten buyers bidding 2.0-3.8 and ten sellers asking 1.0-2.8 (million planck per Wh), signed by each."""
    out = []
    for i in range(10):
        for who, side, limit in ((f"buyer{i}", Side.BID, 2_000_000 + 200_000 * i),
                                 (f"seller{i}", Side.OFFER, 1_000_000 + 200_000 * i)):
            order = Order(order_id=f"{who}:{start}", participant=who, side=side, wh=300 + 37 * i, limit=limit,
                          interval_start_ms=start, nonce=1, expires_ms=start + 10 * INTERVAL_S * 1000)
            out.append(SignedOrder.sign(order, acc.order_keys[who]).encode())
    return out


def test_signed_orders_cleared_settled_and_audited_end_to_end(accounts_factory, settler_settings, child_env,
                                                              tmp_path: Path) -> None:
    acc = accounts_factory(buyers=10, sellers=10, pas=50)  # the shared dev chain's //Alice is finite
    registry = Participants.load(acc.participants_path)
    buses = _two_feeders(GRID)
    for i, name in enumerate(registry):  # 20 participants on the buses of 2 of the grid's real feeders
        entry = registry.get(name).model_copy(update={"bus": buses[i % len(buses)]})
        registry = registry.with_entry(name, entry)
    registry.save(acc.participants_path)
    base = settler_settings(acc)
    s = base.model_copy(update={"market": base.market.model_copy(update={
        "interval_s": INTERVAL_S, "gate_s": 1.0, "tick_s": 0.3, "grid_code": GRID,
        "fees_constant": {"house": 10_000, "feeder": 50_000, "substation": 100_000}})})
    ensure_topics(s.kafka, market_topics(s.kafka))
    worker, port = start_worker(s, tmp_path / "worker.log")
    settler = spawn(["ledger", "settle"], child_env(s), tmp_path / "settler.log")
    try:
        wait_until(lambda: metric(port, "citygrid_market_ticks_total") >= 3 * s.kafka.partitions, 60,
                   "the market's ticks")
        now = int(time.time() * 1000)
        start = now - now % (INTERVAL_S * 1000) + INTERVAL_S * 1000
        orders = _orders(acc, start)
        forged = SignedOrder.sign(SignedOrder.decode(orders[0]).unverified_order().model_copy(
            update={"wh": 90_000, "nonce": 2}), acc.order_keys["seller9"])  # buyer0's order, seller9's key
        Market(s, {}, INTERVAL_S * 1000).send([(order_key(start), raw) for raw in [*orders, forged.encode()]])
        store = SettlementStore(s.paths.settlement_store)
        wait_until(lambda: (r := store.get(start)) is not None and r.status == "settled", 120,
                   "the interval to be cleared and settled", every_s=1)
        assert worker.poll() is None and settler.poll() is None
    finally:
        stop(settler)
        stop(worker)

    [summary] = [IntervalSummary.model_validate_json(r.value)
                 for r in read_topic(s.kafka, interval_summaries_topic(s.kafka)) if r.key == order_key(start)]
    assert summary.order_count == 20 and summary.trade_count >= 5
    # Cleared on the grid's market tree: a price per market node, committed with its certificate's digest.
    assert summary.price.certificate is not None and len(summary.price.nodes) > 2
    letters = [DeadLetter.decode(r.value)
               for r in read_topic(s.kafka, dead_letters_topic(s.kafka.orders_topic, "worker"))]
    assert [(d.reason, d.payload()) for d in letters] == [("bad_signature", forged.encode())]

    env = child_env(s)
    saved = tmp_path / "interval.json"
    t0 = time.perf_counter()
    passed = _audit(env, str(start), "--save", str(saved))
    audit_s = time.perf_counter() - t0
    assert passed.returncode == 0 and "AUDIT PASSED" in passed.stdout, passed.stdout + passed.stderr
    print(f"market audit of one interval (20 orders, {summary.trade_count} trades, chain): {audit_s:.2f} s")

    [published] = json.loads(saved.read_text())
    tampered_order = json.loads(json.dumps(published))
    order_text = tampered_order["orders"][0]["order"]
    tampered_order["orders"][0]["order"] = order_text.replace('"wh":', '"wh":1', 1)  # more Wh than signed
    tampered_trade = json.loads(json.dumps(published))
    tampered_trade["trades"][0]["wh"] += 1
    for tampered, why in ((tampered_order, "bad_signature"), (tampered_trade, "trades")):
        path = tmp_path / f"tampered-{why}.json"
        path.write_text(json.dumps([tampered]))
        caught = _audit(env, str(start), "--from-file", str(path))
        assert caught.returncode == 1 and why in caught.stdout, caught.stdout + caught.stderr
