"""A brief Kafka outage loses nothing: the ingest buffers and retries, MQTT holds the rest.

The shared Kafka must never be stopped, so this test runs its own broker on free ports.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support import enrol, free_port, wait_until

from citygrid.devtools import local_servers
from citygrid.devtools.local_kafka import as_principal
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import ensure_topics, read_topic, topic_end
from citygrid.topics import readings_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]


@pytest.fixture
def own_kafka(live: CitygridSettings, tmp_path: Path):
    """A private single-node Kafka (same recipe as the shared one) that this test may stop."""
    for attempt in range(3):
        port = free_port(consecutive=2)
        s = live.model_copy(update={
            "kafka": live.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{port}"}),
            "paths": live.paths.model_copy(update={"servers_dir": tmp_path / f"own{attempt}"}),
        })
        server = local_servers.servers(s)["kafka"]
        try:
            server.start()
            break
        except local_servers.ServerError:
            # Another process took a port between our check and the broker's bind: draw again.
            if attempt == 2:
                raise
    try:
        # Its own principals and CA: the test's clients act as its admin.
        yield as_principal(s, "admin"), server
    finally:
        server.stop()


def _wait_end(s: CitygridSettings, n: int, timeout_s: float) -> None:
    wait_until(lambda: topic_end(s.kafka, s.kafka.readings_topic) >= n, timeout_s, f"{n} readings in Kafka")


def test_no_valid_reading_is_lost_while_kafka_is_down(own_kafka) -> None:
    s, server = own_kafka
    ensure_topics(s.kafka)
    key = DeviceKey.generate()
    device = enrol(s, key)
    envelopes = [sign_reading(Reading(device=key.device_id, seq=i, ts_ms=int(time.time() * 1000),
                                      kind="meter", values={"p_kw": float(i)}), key).encode()
                 for i in range(300)]
    ingest = Ingest(s)
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    thread.start()
    pub = Publisher(device.mqtt, client_id=f"edge-{key.device_id}")
    pub.connect()
    try:
        for e in envelopes[:100]:
            pub.publish(readings_topic(s.mqtt.readings_topic, "d1", key.device_id), e)
        _wait_end(s, 100, 30)
        server.stop()  # Kafka gone; the devices keep publishing and MQTT keeps acking
        for e in envelopes[100:]:
            pub.publish(readings_topic(s.mqtt.readings_topic, "d1", key.device_id), e)
        time.sleep(2)
        assert not ingest.failed.is_set()
        server.start()
        _wait_end(s, 300, 90)
    finally:
        pub.close()
        stop.set()
        thread.join(30)
    assert not ingest.failed.is_set()
    stored = [r.value for r in read_topic(s.kafka, s.kafka.readings_topic)]
    assert sorted(stored) == sorted(envelopes)  # every one, none twice
