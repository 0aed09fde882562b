"""An active anchorer and its standby as two real processes on the real Kafka and dev chain: the
standby anchors nothing while the active runs; after a kill -9 of the active it takes over, and every
reading ends up anchored exactly once, in roots each put on chain exactly once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from support import as_kafka_service, free_port, wait_until

from citygrid import kafka_clients
from citygrid.devtools.processes import spawn, stop
from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.remarks import parse_anchor_remark, remark_hash
from citygrid.reading import Reading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import ensure_topics
from citygrid.topics import dead_letters_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

INTERVAL_S = 60
DEVICES, PER_DEVICE = 4, 300


def _publish(s: CitygridSettings, keys: list[DeviceKey], seqs: range, start_ms: int) -> None:
    producer = kafka_clients.producer(s.kafka, acks="all")
    for seq in seqs:
        for k in keys:
            reading = Reading(device=k.device_id, seq=seq, ts_ms=start_ms + seq * 1000, kind="meter",
                              values={"p_kw": 1.0 + seq % 5})
            producer.send(s.kafka.readings_topic, key=k.device_id.encode(),
                          value=sign_reading(reading, k).encode())
    producer.flush(30)
    producer.close(5)


def _leaves(store_path: Path) -> int:
    store = AnchorStore(store_path)
    try:
        return store.counts()[2]
    finally:
        store.close()


def test_the_standby_takes_over_after_a_kill_and_nothing_is_anchored_twice(
        live: CitygridSettings, child_env, tmp_path: Path) -> None:
    s = live.model_copy(update={"anchor": live.anchor.model_copy(update={
        "interval_s": INTERVAL_S, "idle_flush_s": 0.5})})
    ensure_topics(s.kafka, [dead_letters_topic(s.kafka.readings_topic, "anchorer")])
    keys = [DeviceKey.generate() for _ in range(DEVICES)]
    registry = DeviceRegistry()
    for k in keys:
        registry.add(k.public_key)
    registry.save(s.paths.device_registry)
    start_ms = (int(time.time() * 1000) // (INTERVAL_S * 1000) - 8) * INTERVAL_S * 1000
    env = child_env(as_kafka_service(s, "anchorer"))  # both instances share the store and the group

    first = spawn(["ledger", "anchor"], {**env, "CITYGRID_METRICS_PORT": str(free_port())},
                  tmp_path / "anchorer-a.log")
    time.sleep(4)  # `first` joins first and becomes the active one
    second = spawn(["ledger", "anchor"], {**env, "CITYGRID_METRICS_PORT": str(free_port())},
                   tmp_path / "anchorer-b.log")
    try:
        _publish(s, keys, range(0, PER_DEVICE // 2), start_ms)
        wait_until(lambda: _leaves(s.paths.anchor_store) > 0, 90, "the active anchorer's first batch")
        first.kill()  # kill -9, mid-stream: its open batches and uncommitted offsets are lost with it
        first.wait()
        _publish(s, keys, range(PER_DEVICE // 2, PER_DEVICE), start_ms)
        total = DEVICES * PER_DEVICE
        wait_until(lambda: _leaves(s.paths.anchor_store) == total, 150, "the standby to anchor the rest")
        store = AnchorStore(s.paths.anchor_store)
        wait_until(lambda: not store.batches(pending_only=True), 60, "every batch on chain")
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                stop(proc)

    batches = store.batches()
    assert sum(b.count for b in batches) == DEVICES * PER_DEVICE  # each reading in one batch (UNIQUE)
    assert "anchorer_active" in (tmp_path / "anchorer-b.log").read_text()  # the standby took over
    chain = ChainClient(s.chain.url)
    on_chain: Counter[str] = Counter()
    for number in range(min(b.block_number for b in batches), chain.head_number() + 1):
        block = chain.rpc("chain_getBlockHash", [number])
        for _idx, _signer, text_hash in chain.remarked(block):
            on_chain[text_hash.removeprefix("0x")] += 1
    for b in batches:
        parse_anchor_remark(b.remark)
        times = on_chain[remark_hash(b.remark).removeprefix("0x")]
        assert times == 1, f"batch {b.id}'s root is on chain {times} times"
