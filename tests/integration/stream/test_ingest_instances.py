"""Two ingest instances on the real servers, one killed with SIGKILL mid-stream while devices publish and
republish: nothing valid lost, no (device, seq) twice in the readings topic."""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support import as_kafka_service, enrol, wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.mqtt import Publisher
from citygrid.ops.enroll import enroll_ingest
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.stream.ingest import prepare_session, retire_session
from citygrid.stream.kafka_topics import read_topic
from citygrid.topics import readings_topic

pytestmark = [pytest.mark.servers, pytest.mark.timeout(300)]

DEVICES, PER_DEVICE, EVERY_S = 6, 120, 0.04


class Instance:
    """`citygrid stream ingest` as instance k: its own broker identity and session, the ingest principal."""

    def __init__(self, s: CitygridSettings, log: Path) -> None:
        self.env, self.log = as_kafka_service(s, "ingest").as_env(), log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = spawn(["stream", "ingest"], self.env, self.log)

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        self.proc.kill()  # SIGKILL: no flush, no ack, its transaction left open
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc)


def _device(live: CitygridSettings) -> tuple[DeviceKey, CitygridSettings, list[bytes]]:
    key = DeviceKey.generate()
    now = int(time.time() * 1000)
    payloads = [sign_reading(Reading(device=key.device_id, seq=i, ts_ms=now + i, kind="meter",
                                     values={"p_kw": i / 10}), key).encode() for i in range(PER_DEVICE)]
    return key, enrol(live, key), payloads


def _publish(live: CitygridSettings, key: DeviceKey, device: CitygridSettings, payloads: list[bytes],
             copies: list[int]) -> None:
    """Publish every reading at a steady pace; every 7th is published again 5 readings later (a device
    whose PUBACK was lost sends again): the copy may reach either instance."""
    pub = Publisher(device.mqtt, client_id=str(device.mqtt.client_id))
    pub.connect()
    topic = readings_topic(live.mqtt.readings_topic, "d1", key.device_id)
    try:
        for i, payload in enumerate(payloads):
            pub.publish(topic, payload)
            if i >= 5 and (i - 5) % 7 == 0:
                pub.publish(topic, payloads[i - 5])
                copies.append(i - 5)
            time.sleep(EVERY_S)
    finally:
        pub.close()


def _stored(s: CitygridSettings) -> list[tuple[str, int]]:
    return [(r.key.decode(), SignedReading.decode(r.value).reading().seq)
            for r in read_topic(s.kafka, s.kafka.readings_topic)]


def test_two_instances_one_killed_mid_stream_lose_nothing_and_pass_no_duplicate(
        live: CitygridSettings, tmp_path: Path) -> None:
    instances = []
    for k, creds in enumerate(enroll_ingest(live, 2)):
        own = live.model_copy(update={"mqtt": creds.apply(live.mqtt)})
        prepare_session(own)  # readings queue for both from the first publish on
        instances.append(Instance(own, tmp_path / f"ingest-{k}.log"))
    retire_session(live)  # the fixture's lone-ingest session would otherwise hold a third of the readings
    devices = [_device(live) for _ in range(DEVICES)]
    copies: list[int] = []
    publishers = [threading.Thread(target=_publish, args=(live, *d, copies)) for d in devices]
    total = DEVICES * PER_DEVICE
    try:
        for inst in instances:
            inst.start()
        for p in publishers:
            p.start()
        wait_until(lambda: len(_stored(live)) >= total // 4, 90, "a quarter of the readings", every_s=0.2)
        instances[0].kill()
        at_kill = len(_stored(live))
        assert any(p.is_alive() for p in publishers), "the kill came after the devices had finished"
        time.sleep(3)
        instances[0].start()  # as its StatefulSet does: the same identity, session and transactional id
        for p in publishers:
            p.join(120)
        wait_until(lambda: len(_stored(live)) >= total, 120, f"all {total} readings", every_s=1)
        time.sleep(3)  # anything late and duplicated would land now
        stored = _stored(live)
    finally:
        for inst in instances:
            inst.stop()

    assert at_kill < total, "the kill was not mid-stream"
    assert len(stored) == total, f"{len(stored) - len(set(stored))} duplicates"
    assert set(stored) == {(key.device_id, i) for key, _, _ in devices for i in range(PER_DEVICE)}
    dead = collections.Counter(DeadLetter.decode(r.value).reason
                               for r in read_topic(live.kafka, live.kafka.dead_letter_topic))
    assert set(dead) == {"duplicate"} and dead["duplicate"] >= len(copies), dead
