"""A device's hostile readings on the real TLS broker and Kafka: every one refused with its reason in the
dead letters, while the ingest keeps running, the device is not locked out and no valid reading is lost.

Each attack is published by an enrolled device on its own readings topic (the only topic the broker lets it
publish to), i.e. a device whose key or firmware the attacker holds.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgpack
import pytest
from support import RunningIngest, enrol, wait_until

from citygrid.mqtt import Publisher, PublishError
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.stream.ingest import KEPT_BYTES
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.topics import readings_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]


class Device:
    """An enrolled device's broker connection on its own readings topic."""

    def __init__(self, live: CitygridSettings, key: DeviceKey) -> None:
        self.key, self.s = key, enrol(live, key)
        self.topic = readings_topic(live.mqtt.readings_topic, "d1", key.device_id)
        self.pub = Publisher(self.s.mqtt, client_id=str(self.s.mqtt.client_id))
        self.pub.connect()

    def send(self, *payloads: bytes) -> None:
        for p in payloads:
            self.pub.publish(self.topic, p)

    def reconnect(self) -> None:
        self.pub.close()
        self.pub = Publisher(self.s.mqtt, client_id=str(self.s.mqtt.client_id))
        self.pub.connect()

    def close(self) -> None:
        self.pub.close()


def _valid(key: DeviceKey, seq: int) -> bytes:
    return sign_reading(Reading(device=key.device_id, seq=seq, ts_ms=int(time.time() * 1000), kind="meter",
                                values={"p_kw": 1.0 + seq}), key).encode()


def _signed_raw(key: DeviceKey, seq: int = 0, **fields: Any) -> bytes:
    """A correctly signed envelope around a canonical (sorted-key) body that the schema must judge:
    what a device's own key can make, whatever the Reading model would allow."""
    body = {"schema_version": 1, "device": key.device_id, "seq": seq, "ts_ms": int(time.time() * 1000),
            "kind": "meter", "values": {"p_kw": 1.0}} | fields
    raw = msgpack.packb({k: body[k] for k in sorted(body)}, use_bin_type=True)
    return SignedReading(raw, key.sign(raw)).encode()


def _dead(s: CitygridSettings) -> list[DeadLetter]:
    return [DeadLetter.decode(r.value) for r in read_topic(s.kafka, s.kafka.dead_letter_topic)]


def _stored_seqs(s: CitygridSettings) -> list[int]:
    return [SignedReading.decode(r.value).reading().seq for r in read_topic(s.kafka, s.kafka.readings_topic)]


def _wait_ends(s: CitygridSettings, readings: int, dead: int, timeout_s: float = 60) -> None:
    def reached() -> bool:
        got = topic_end(s.kafka, s.kafka.readings_topic), topic_end(s.kafka, s.kafka.dead_letter_topic)
        assert got[0] <= readings and got[1] <= dead, f"more records than expected: {got}"
        return got == (readings, dead)

    wait_until(reached, timeout_s, f"{readings} readings and {dead} dead letters", every_s=0.3)


def test_oversized_messages_neither_stop_the_ingest_nor_cost_queued_readings(live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = Device(live, key)
    limit = live.mqtt.max_message_bytes
    big = b"\x00" * (1024 * 1024)  # fits the broker, far beyond any reading: the ingest's own check
    try:
        device.send(_valid(key, 0), _valid(key, 1))  # queued while the ingest is down
        # 10 MB is beyond the broker's max_packet_size: refused at the broker, never delivered or held.
        assert limit < 10 * 1024 * 1024
        with pytest.raises(PublishError):
            device.pub.publish(device.topic, b"x" * (10 * 1024 * 1024), timeout_s=5)
        wait_until(lambda: not device.pub.connected, 10, "the broker to drop the oversized publisher", 0.05)
        device.reconnect()
        device.send(big, _valid(key, 2), _valid(key, 3))
    finally:
        device.close()

    ingest = RunningIngest(live)
    try:
        _wait_ends(live, readings=4, dead=1)
        assert ingest.thread.is_alive()
        device = Device(live, key)
        try:
            device.send(_valid(key, 4))  # the ingest still runs: the next reading arrives
        finally:
            device.close()
        _wait_ends(live, readings=5, dead=1)
    finally:
        ingest.close()
    assert sorted(_stored_seqs(live)) == [0, 1, 2, 3, 4]
    (dead,) = _dead(live)
    assert dead.reason == "too_large"
    assert dead.payload() == big[:KEPT_BYTES]
    assert dead.payload_len == len(big) and dead.payload_sha256 == hashlib.sha256(big).hexdigest()

    # A restart does not stop on anything redelivered either: nothing is left, nothing is written twice.
    again = RunningIngest(live)
    try:
        device = Device(live, key)
        try:
            device.send(_valid(key, 5))
        finally:
            device.close()
        _wait_ends(live, readings=6, dead=1)
    finally:
        again.close()


def test_seq_at_2_63_is_refused_and_does_not_lock_the_device_out(live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = Device(live, key)
    ingest = RunningIngest(live)
    try:
        device.send(_valid(key, 0), _signed_raw(key, seq=2**63), _valid(key, 1), _valid(key, 2))
        _wait_ends(live, readings=3, dead=1)
    finally:
        device.close()
        ingest.close()
    assert _stored_seqs(live) == [0, 1, 2]
    (dead,) = _dead(live)
    assert dead.reason == "malformed" and "seq" in dead.error


def test_values_are_never_coerced_and_their_count_and_names_are_bounded(live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = Device(live, key)
    huge_count = _signed_raw(key, 3, values={f"v{i:05d}": 1.0 for i in range(20_000)})
    huge_name = _signed_raw(key, 4, values={"n" * 50_000: 1.0})
    attacks = [
        ("malformed", _signed_raw(key, 0, values={"p_kw": "1.5"})),
        ("malformed", _signed_raw(key, 1, values={"p_kw": True})),
        ("malformed", _signed_raw(key, 2, values={"p_kw": b"1"})),
        # The sizes do not even fit a reading's message: refused on the length, before parsing.
        ("too_large", huge_count),
        ("too_large", huge_name),
        # Just past the schema's bounds, within the size: refused by the schema.
        ("malformed", _signed_raw(key, 5, values={f"v{i:03d}": 1.0 for i in range(65)})),
        ("malformed", _signed_raw(key, 6, values={"n" * 65: 1.0})),
        ("out_of_range", _signed_raw(key, 7, values={"p_kw": float("nan")})),
    ]
    ingest = RunningIngest(live)
    try:
        device.send(*(p for _, p in attacks), _valid(key, 8))
        _wait_ends(live, readings=1, dead=len(attacks))
    finally:
        device.close()
        ingest.close()
    dead = _dead(live)  # keyed by reason: ordered within a reason only
    assert sorted(d.reason for d in dead) == sorted(r for r, _ in attacks)
    assert all(len(d.error) < 2000 for d in dead)  # no 50 kB name echoed into the dead letter
    assert {d.payload_sha256 for d in dead if d.reason == "too_large"} == {
        hashlib.sha256(huge_count).hexdigest(), hashlib.sha256(huge_name).hexdigest()}
    assert _stored_seqs(live) == [8]
    # The stored reading's values are the float the device signed, not a coerced string or bool.
    stored = SignedReading.decode(read_topic(live.kafka, live.kafka.readings_topic)[0].value).reading()
    assert stored.values == {"p_kw": 9.0}


def test_a_reordered_envelope_is_refused_and_the_canonical_one_accepted(live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = Device(live, key)
    genuine = SignedReading.decode(_valid(key, 0))
    reordered = msgpack.packb({"s": genuine.signature, "b": genuine.body, "v": 1}, use_bin_type=True)
    assert reordered != genuine.encode()
    ingest = RunningIngest(live)
    try:
        device.send(reordered, genuine.encode())
        _wait_ends(live, readings=1, dead=1)
    finally:
        device.close()
        ingest.close()
    (dead,) = _dead(live)
    assert dead.reason == "non_canonical" and dead.payload() == reordered
    # What is stored is byte for byte what the device signed and its proof will hash.
    assert read_topic(live.kafka, live.kafka.readings_topic)[0].value == genuine.encode()
