"""The broker trusts no one unverified: TLS only, no anonymous client, every identity limited to its own
topics and client id, and a revoked device refused within seconds, its readings dead-lettered `revoked`."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from support import as_service, enrol, wait_until

from citygrid.mqtt import Publisher, PublishError, mqtt_client
from citygrid.ops.enroll import revoke_device
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.topics import (
    commands_topic,
    model_updates_topic,
    readings_filter,
    readings_topic,
    shared_readings_filter,
)

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


def _reading(key: DeviceKey, seq: int, kind: str = "meter") -> bytes:
    return sign_reading(Reading(device=key.device_id, seq=seq, ts_ms=int(time.time() * 1000), kind=kind,
                                values={"p_kw": 1.0 + seq}), key).encode()


def _connect(s: CitygridSettings, client_id: str | None = None) -> Publisher:
    pub = Publisher(s.mqtt, client_id=client_id or "unused")
    pub.connect(timeout_s=5)
    return pub


def _granted(s: CitygridSettings, topic_filter: str) -> bool:
    """Whether the broker grants `s`'s identity a subscription to `topic_filter`."""
    client = mqtt_client(s.mqtt, "unused", clean_session=True)
    answer: list[bool] = []
    done = threading.Event()

    def on_subscribe(c, u, mid, reason_codes, properties) -> None:
        answer.append(not reason_codes[0].is_failure)
        done.set()

    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
    client.connect(s.mqtt.host, s.mqtt.port)
    client.loop_start()
    try:
        assert done.wait(10), "no SUBACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


class Observer:
    """The test's observer identity, subscribed to every readings, command and model topic of the test."""

    def __init__(self, s: CitygridSettings) -> None:
        o = as_service(s, "observer")
        self.seen: list[tuple[str, bytes]] = []
        self.client = mqtt_client(o.mqtt, "unused", clean_session=True)
        self.client.on_message = lambda c, u, m: self.seen.append((m.topic, m.payload))
        ready = threading.Event()
        self.client.on_subscribe = lambda *_: ready.set()
        roots = (s.mqtt.readings_topic, s.mqtt.commands_topic, s.edge.model_updates_topic)
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{r}/#", 1) for r in roots])
        self.client.connect(s.mqtt.host, s.mqtt.port)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_anonymous_plain_and_untrusted_connections_are_refused(live: CitygridSettings, tmp_path) -> None:
    anonymous = live.mqtt.model_copy(update={"username": None, "password": None, "client_id": None})
    with pytest.raises(PublishError, match=r"(?i)not authori[sz]ed|bad user"):
        _connect(live.model_copy(update={"mqtt": anonymous}), "anonymous")
    wrong_password = live.mqtt.model_copy(update={"password": "guess"})
    with pytest.raises(PublishError, match="accept"):
        _connect(live.model_copy(update={"mqtt": wrong_password}))

    # Plain MQTT (a CONNECT without TLS) never gets a CONNACK: the listener speaks TLS only.
    connect = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0])
    with socket.create_connection((live.mqtt.host, live.mqtt.port), timeout=5) as sock:
        sock.sendall(connect)
        try:
            answer = sock.recv(16)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), "the broker answered plain MQTT"

    # A client that checks the broker against another CA refuses it (no CERT_NONE anywhere).
    from citygrid.devtools.pki import LocalPki

    other = LocalPki(tmp_path / "other-ca").ensure()
    untrusted = live.mqtt.model_copy(update={"ca_file": other.ca_cert})
    with pytest.raises(PublishError, match=r"(?i)certificate.verify.failed"):
        _connect(live.model_copy(update={"mqtt": untrusted}))
    ctx = ssl.create_default_context(cafile=str(live.mqtt.ca_file))
    with socket.create_connection((live.mqtt.host, live.mqtt.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="broker.example.org")  # not the name in the certificate


def test_a_device_reaches_only_its_own_topics(live: CitygridSettings) -> None:
    mine, other = DeviceKey.generate(), DeviceKey.generate()
    me, them = enrol(live, mine), enrol(live, other, district="d2")
    root, cmds, models = live.mqtt.readings_topic, live.mqtt.commands_topic, live.edge.model_updates_topic
    assert not _granted(me, "#")
    assert not _granted(me, f"{root}/#")
    assert not _granted(me, readings_topic(root, "d2", other.device_id))
    assert not _granted(me, commands_topic(cmds, "d2", other.device_id))
    assert not _granted(me, model_updates_topic(models, other.device_id))
    assert _granted(me, commands_topic(cmds, "d1", mine.device_id))
    assert _granted(me, model_updates_topic(models, mine.device_id))

    observer = Observer(live)
    pub = _connect(me)
    try:
        forbidden = [
            readings_topic(root, "d2", other.device_id), readings_topic(root, "d2", mine.device_id),
            commands_topic(cmds, "d2", other.device_id), commands_topic(cmds, "d1", mine.device_id),
            model_updates_topic(models, other.device_id), model_updates_topic(models, mine.device_id)]
        for topic in forbidden:
            pub.publish(topic, _reading(mine, 0))
        own = readings_topic(root, "d1", mine.device_id)
        pub.publish(own, _reading(mine, 1))  # sent last: once it arrived, the others had their chance
        wait_until(lambda: any(t == own for t, _ in observer.seen), 10, "the device's own reading", 0.05)
        time.sleep(0.3)
    finally:
        pub.close()
        observer.close()
    assert [t for t, _ in observer.seen] == [own], "the broker passed a publish outside the device's ACL"
    assert them.mqtt.username == other.device_id


def test_the_ingest_may_join_only_its_own_shared_subscription(live: CitygridSettings) -> None:
    root = live.mqtt.readings_topic
    assert _granted(live, shared_readings_filter(root, live.mqtt.ingest_client_id))
    # A plain subscription beside the group would take every reading once more; another group, too.
    assert not _granted(live, readings_filter(root))
    assert not _granted(live, f"{root}/#")
    assert not _granted(live, shared_readings_filter(root, "another-ingest"))


def test_nobody_takes_another_identitys_session(live: CitygridSettings) -> None:
    mine, other = DeviceKey.generate(), DeviceKey.generate()
    me, them = enrol(live, mine), enrol(live, other)
    ingest = _connect(live)  # the test's ingest, under its bound client id
    victim = _connect(them)
    try:
        for client_id in (live.mqtt.ingest_client_id, f"edge-{other.device_id}"):
            thief = me.mqtt.model_copy(update={"client_id": client_id})
            with pytest.raises(PublishError, match="accept"):
                _connect(me.model_copy(update={"mqtt": thief}))
        time.sleep(0.5)
        assert ingest.connected and victim.connected, "a refused takeover still kicked the session's owner"
    finally:
        ingest.close()
        victim.close()


def test_revoked_device_is_refused_within_seconds_and_its_readings_dead_lettered(
        live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = enrol(live, key)
    pub = _connect(device)
    topic = readings_topic(live.mqtt.readings_topic, "d1", key.device_id)
    try:
        for seq in range(3):  # queued for the ingest, which is not running yet
            pub.publish(topic, _reading(key, seq))
        t0 = time.monotonic()
        revoke_device(live, key.device_id)
        wait_until(lambda: not pub.connected, 5, "the broker to drop the revoked device", 0.05)
        dropped_s = time.monotonic() - t0
    finally:
        pub.close()
    assert dropped_s < 5
    with pytest.raises(PublishError, match="accept"):
        _connect(device)

    ingest = Ingest(live)
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: topic_end(live.kafka, live.kafka.dead_letter_topic) >= 3, 30, "3 dead letters")
    finally:
        stop.set()
        thread.join(30)
    dead = [DeadLetter.decode(r.value) for r in read_topic(live.kafka, live.kafka.dead_letter_topic)]
    assert [d.reason for d in dead] == ["revoked"] * 3
    assert topic_end(live.kafka, live.kafka.readings_topic) == 0


def test_district_and_kind_come_from_the_enrolment(live: CitygridSettings) -> None:
    key = DeviceKey.generate()
    device = enrol(live, key, district="north")
    pub = _connect(device)
    try:
        pub.publish(readings_topic(live.mqtt.readings_topic, "north", key.device_id), _reading(key, 0))
        pub.publish(readings_topic(live.mqtt.readings_topic, "north", key.device_id), _reading(key, 1, "pv"))
    finally:
        pub.close()
    # The device moves to another feeder: what it queued under the old district no longer matches.
    moved = enrol(live, key, district="south")
    pub = _connect(moved)
    try:
        pub.publish(readings_topic(live.mqtt.readings_topic, "south", key.device_id), _reading(key, 2))
    finally:
        pub.close()

    ingest = Ingest(live)
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: topic_end(live.kafka, live.kafka.dead_letter_topic) >= 2
                   and topic_end(live.kafka, live.kafka.readings_topic) >= 1, 30, "the 3 readings handled")
    finally:
        stop.set()
        thread.join(30)
    dead = [DeadLetter.decode(r.value) for r in read_topic(live.kafka, live.kafka.dead_letter_topic)]
    assert [d.reason for d in dead] == ["topic_mismatch", "topic_mismatch"]
    stored = read_topic(live.kafka, live.kafka.readings_topic)
    assert [SignedReading.decode(r.value).reading().seq for r in stored] == [2]
    assert dict(stored[0].headers)["district"] == b"south"


def test_plain_paho_without_tls_gets_no_session(live: CitygridSettings) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain", clean_session=True)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    try:
        client.connect(live.mqtt.host, live.mqtt.port)
        client.loop_start()
        assert not connected.wait(3)
    finally:
        client.loop_stop()
