"""A brief Kafka outage loses nothing: the ingest buffers and retries, MQTT holds the rest.

The shared Kafka must never be stopped, so this test runs its own broker on free ports.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

import pytest

from citygrid.devtools import local_servers
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import ensure_topics, read_topic, topic_end
from citygrid.topics import readings_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]


def _free_port_pair() -> int:
    """Two consecutive ports both bindable now, below Linux's ephemeral range (32768+) so that no
    client connection's local port can take them before the broker binds."""
    for port in random.sample(range(21000, 32000, 2), 200):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def own_kafka(live: CitygridSettings, tmp_path: Path):
    """A private single-node Kafka (same recipe as the shared one) that this test may stop."""
    for attempt in range(3):
        port = _free_port_pair()
        kafka = live.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{port}"})
        s = live.model_copy(update={"kafka": kafka})
        server = local_servers.servers(s)["kafka"]
        base = tmp_path / f"own{attempt}"
        try:
            server.start(base)
            break
        except local_servers.ServerError:
            # Another process took a port between our check and the broker's bind: draw again.
            if attempt == 2:
                raise
    try:
        yield s, server, base
    finally:
        server.stop(base)


def _wait_end(s: CitygridSettings, n: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if topic_end(s.kafka, s.kafka.readings_topic) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {n} readings in Kafka after {timeout_s}s")


def test_no_valid_reading_is_lost_while_kafka_is_down(own_kafka) -> None:
    s, server, base = own_kafka
    ensure_topics(s.kafka)
    key = DeviceKey.generate()
    reg = DeviceRegistry()
    reg.add(key.public_key)
    reg.save(s.paths.device_registry)
    envelopes = [sign_reading(Reading(device=key.device_id, seq=i, ts_ms=int(time.time() * 1000),
                                      kind="meter", values={"p_kw": float(i)}), key).encode()
                 for i in range(300)]
    ingest = Ingest(s)
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    thread.start()
    pub = Publisher(s.mqtt, client_id=f"outage-{key.device_id}")
    pub.connect()
    try:
        for e in envelopes[:100]:
            pub.publish(readings_topic(s.mqtt.readings_topic, "d1", key.device_id), e)
        _wait_end(s, 100, 30)
        server.stop(base)  # Kafka gone; the devices keep publishing and MQTT keeps acking
        for e in envelopes[100:]:
            pub.publish(readings_topic(s.mqtt.readings_topic, "d1", key.device_id), e)
        time.sleep(2)
        assert not ingest.failed.is_set()
        server.start(base)
        _wait_end(s, 300, 90)
    finally:
        pub.close()
        stop.set()
        thread.join(30)
    assert not ingest.failed.is_set()
    stored = [r.value for r in read_topic(s.kafka, s.kafka.readings_topic)]
    assert sorted(stored) == sorted(envelopes)  # every one, none twice
