"""The ingest on real Mosquitto and Kafka: rejects dead-lettered with reasons, no duplicates on restart."""

from __future__ import annotations

import time

import pytest
from support import RunningIngest, enrol, wait_until

from citygrid.mqtt import Publisher
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.topics import readings_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


def _publish(device: CitygridSettings, payloads: list[bytes]) -> None:
    """Publish as the device `device` connects as (support.enrol), on its own topic."""
    pub = Publisher(device.mqtt, client_id=str(device.mqtt.client_id))
    pub.connect()
    try:
        for p in payloads:
            pub.publish(readings_topic(device.mqtt.readings_topic, "d1", str(device.mqtt.username)), p)
    finally:
        pub.close()


def _reading(key: DeviceKey, seq: int, **kw) -> Reading:
    fields = {"device": key.device_id, "seq": seq, "ts_ms": int(time.time() * 1000), "kind": "meter",
              "values": {"p_kw": 1.0 + seq}} | kw
    return Reading(**fields)


def _wait_ends(s: CitygridSettings, readings: int, dead: int, timeout_s: float = 30) -> None:
    def reached() -> bool:
        got = topic_end(s.kafka, s.kafka.readings_topic), topic_end(s.kafka, s.kafka.dead_letter_topic)
        assert got[0] <= readings and got[1] <= dead, f"more records than expected: {got}"
        return got == (readings, dead)

    wait_until(reached, timeout_s, f"{readings} readings and {dead} dead letters", every_s=0.3)


def _dead_letters(s: CitygridSettings) -> list[DeadLetter]:
    return [DeadLetter.decode(r.value) for r in read_topic(s.kafka, s.kafka.dead_letter_topic)]


def test_rejects_land_in_the_dead_letter_topic_with_their_reasons(live: CitygridSettings) -> None:
    good, stranger, forger = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    device = enrol(live, good)
    valid = [sign_reading(_reading(good, i), good).encode() for i in range(5)]
    forged_body = _reading(good, 99).body()
    bad = {
        "malformed": b"\x92not a reading",
        "bad_signature": SignedReading(forged_body, forger.sign(forged_body)).encode(),
        "unknown_device": sign_reading(_reading(stranger, 0), stranger).encode(),
        "duplicate": valid[2],
        "out_of_range": sign_reading(_reading(good, 50, ts_ms=int(time.time() * 1000) + 3_600_000),
                                     good).encode(),
    }
    ingest = RunningIngest(live)
    try:
        _publish(device, valid + list(bad.values()))
        _wait_ends(live, len(valid), len(bad))
    finally:
        ingest.close()

    stored = read_topic(live.kafka, live.kafka.readings_topic)
    assert sorted(r.value for r in stored) == sorted(valid)
    assert {r.key for r in stored} == {good.device_id.encode()}
    dead = _dead_letters(live)
    by_reason = {d.reason: d.payload() for d in dead}
    assert by_reason == bad
    assert all(d.error and d.source.endswith(good.device_id) for d in dead)


def test_a_restarted_ingest_lets_no_duplicate_through(live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = enrol(live, key)
    first = [sign_reading(_reading(key, i), key).encode() for i in range(20)]
    ingest = RunningIngest(live)
    try:
        _publish(device, first)
        _wait_ends(live, 20, 0)
    finally:
        ingest.close()

    # A new process knows only what Kafka holds: the broker redelivering the first readings
    # (their acks lost in a crash) must not get them in twice.
    later = [sign_reading(_reading(key, i), key).encode() for i in range(20, 30)]
    ingest = RunningIngest(live)
    try:
        _publish(device, first[::2] + later)
        _wait_ends(live, 30, 10)
    finally:
        ingest.close()
    values = [r.value for r in read_topic(live.kafka, live.kafka.readings_topic)]
    assert sorted(values) == sorted(first + later)
    assert {d.reason for d in _dead_letters(live)} == {"duplicate"}
