"""Readings written straight to the real readings topic: a forgery in a device's name is never
anchored and the genuine reading stays provable; a reading with seq 2^63 is dead-lettered and
anchoring carries on (real Kafka, the shared dev chain)."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
from support import isolated_settings, wait_until

from citygrid import kafka_clients
from citygrid.ledger.anchorer import Anchorer
from citygrid.ledger.proofs import build_bundle, verify_on_chain
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.kafka_topics import ensure_topics, read_topic
from citygrid.topics import dead_letters_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

INTERVAL_S = 60


def test_forged_and_out_of_bounds_readings_are_dead_lettered_and_the_genuine_ones_anchored(
        servers: CitygridSettings, tmp_path) -> None:
    base = isolated_settings(tmp_path)
    s = base.model_copy(update={"anchor": base.anchor.model_copy(update={
        "interval_s": INTERVAL_S, "idle_flush_s": 0.5})})
    ensure_topics(s.kafka, [s.kafka.readings_topic])
    device, attacker = DeviceKey.generate(), DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(device.public_key)
    registry.save(s.paths.device_registry)
    start = (int(time.time() * 1000) // (INTERVAL_S * 1000) - 3) * INTERVAL_S * 1000

    def reading(seq: int, value: float) -> Reading:
        return Reading(device=device.device_id, seq=seq, ts_ms=start + seq * 1000, kind="meter",
                       values={"p_kw": value})

    genuine = sign_reading(reading(7, 1.5), device).encode()
    body = reading(7, 500.0).body()
    forged = SignedReading(body, attacker.sign(body)).encode()  # the device's name, not its key
    huge_body = msgpack.packb({"device": device.device_id, "kind": "meter", "schema_version": 1,
                               "seq": 2**63, "ts_ms": start + 8000, "values": {"p_kw": 1.0}},
                              use_bin_type=True)
    huge = SignedReading(huge_body, device.sign(huge_body)).encode()  # signed by the device, yet unstorable
    later = sign_reading(reading(9, 2.0), device).encode()
    producer = kafka_clients.producer(s.kafka, acks="all")
    for value in (forged, genuine, huge, later):  # the forgery first: it used to win the slot
        producer.send(s.kafka.readings_topic, key=device.device_id.encode(), value=value)
    producer.flush(30)
    producer.close(5)

    anchorer = Anchorer.from_settings(s)
    stop = threading.Event()
    thread = threading.Thread(target=anchorer.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: anchorer.store.counts()[2] == 2 and not anchorer.store.batches(pending_only=True),
                   90, "the genuine readings to be anchored")
        assert thread.is_alive(), "the anchorer stopped on a bad record"
    finally:
        stop.set()
        thread.join(30)

    assert anchorer.store.envelope(device.device_id, 7) == genuine
    assert anchorer.store.envelope(device.device_id, 9) == later
    bundle = build_bundle(anchorer.store, device.device_id, 7, device.public_key, anchorer.chain)
    proven = verify_on_chain(bundle, anchorer.chain, "0x" + anchorer.keypair.public_key.hex())
    assert proven.values == {"p_kw": 1.5}

    letters = [DeadLetter.decode(r.value)
               for r in read_topic(s.kafka, dead_letters_topic(s.kafka.readings_topic, "anchorer"))]
    assert sorted((d.reason, d.payload()) for d in letters) == sorted(
        [("bad_signature", forged), ("malformed", huge)])
    assert all(d.source.startswith(f"{s.kafka.readings_topic}/") for d in letters)
    anchorer.chain.close()
