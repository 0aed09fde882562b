"""`citygrid edge publish-model` on the real TLS broker: the update is signed for each named device and
retained on its model topic as the "models" identity; a named device that connects later installs it,
a device not named refuses it (even when it is replayed onto its topic) and keeps its model, and the
CLI refuses a device that is not enrolled or revoked before publishing anything."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from integration.edge.test_store_forward import Paced, meter
from support import as_service, enrol, wait_until

from citygrid.commands import REFUSED
from citygrid.edge.agent import EdgeAgent
from citygrid.edge.model_update import ModelStore
from citygrid.edge.store_forward import Outbox
from citygrid.mqtt import Publisher, mqtt_client
from citygrid.ops.enroll import enroll_service, revoke_device
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.train_models import train
from citygrid.topics import model_updates_topic

pytestmark = pytest.mark.timeout(180)


class Device:
    """An enrolled device's agent on the real broker, with a model store trusting `authority`."""

    def __init__(self, s: CitygridSettings, authority: DeviceKey, v1: Path, where: Path) -> None:
        self.key = DeviceKey.generate()
        self.settings = enrol(s, self.key)
        self.store = ModelStore(where / "models", authority.public_key,
                                max_update_bytes=s.edge.max_model_update_bytes)
        self.store.install(v1, serial=1)
        self.pub = Publisher(self.settings.mqtt, client_id=f"edge-{self.key.device_id}")
        self.topic = model_updates_topic(s.edge.model_updates_topic, self.key.device_id)
        driver = meter()
        driver.steps = 100_000
        self.paced = Paced(driver, 0.02)
        self.agent = EdgeAgent(self.key, self.paced, self.pub, outbox=Outbox(where / "outbox.db"),
                               models=self.store, updates_topic=self.topic)
        self.thread = threading.Thread(target=lambda: self.agent.run(drain_timeout_s=10), daemon=True)

    def start(self) -> None:
        self.pub.connect()
        self.thread.start()

    def stop(self) -> None:
        self.paced.stop.set()
        self.thread.join(20)
        self.pub.close()


def _cli(s: CitygridSettings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citygrid", "edge", "publish-model", *args],
                          capture_output=True, text=True, env={**s.as_env(), "COLUMNS": "1000"}, timeout=120)


def test_named_devices_install_the_retained_update_others_refuse_it(
        live: CitygridSettings, small_model: Path, tmp_path: Path) -> None:
    s = live
    authority = DeviceKey.generate()
    authority.save(tmp_path / "command.key")
    enroll_service(s, "models", f"{s.mqtt.ingest_client_id}-models").save(tmp_path / "models.json")
    v1 = train(s.paths.cache_dir, tmp_path / "v1", version="1", trees=3, max_profiles=1)["load_nowcast"]
    named, other = (Device(s, authority, v1, tmp_path / name) for name in ("named", "other"))

    # Published before the named device is even connected: retained, it finds it when it connects.
    done = _cli(s, str(small_model), "--device", named.key.device_id, "--serial", "7", "--command-key",
                str(tmp_path / "command.key"), "--credentials", str(tmp_path / "models.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published load_nowcast 2 (serial 7" in done.stdout and named.key.device_id in done.stdout
    wrong_target = REFUSED.labels("model_update", "wrong_target")
    refused_before = wrong_target._value.get()
    for d in (named, other):
        d.start()
    try:
        wait_until(lambda: named.agent.model_version == "load_nowcast:2", 30,
                   "the named device to install the retained update", every_s=0.1)
        # The same genuine update replayed (retained) onto the other device's topic by the models identity.
        retained = _retained(s, named.topic)
        models = as_service(s, "models")
        replayer = Publisher(models.mqtt, client_id=str(models.mqtt.client_id))
        replayer.connect()
        replayer.client.publish(other.topic, retained, qos=1, retain=True).wait_for_publish(10)
        replayer.close()
        wait_until(lambda: wrong_target._value.get() > refused_before, 20,
                   "the other device to refuse the update", every_s=0.1)
        assert other.agent.model_version == "load_nowcast:1"
        seq = other.agent.next_seq
        wait_until(lambda: other.agent.next_seq > seq + 5, 10, "the other device to keep measuring")
    finally:
        for d in (named, other):
            d.stop()
    assert named.store.current().version == "2" and other.store.current().version == "1"


def _retained(s: CitygridSettings, topic: str) -> bytes:
    """The retained message on `topic`, as an observer sees it."""
    got: list[bytes] = []
    observer = as_service(s, "observer")
    c = mqtt_client(observer.mqtt, "retained-reader", clean_session=True)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
    c.connect(s.mqtt.host, s.mqtt.port)
    c.loop_start()
    try:
        wait_until(lambda: bool(got), 10, f"the retained update on {topic}", every_s=0.1)
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def test_refuses_unenrolled_or_revoked_targets_and_publishes_nothing(
        live: CitygridSettings, small_model: Path, tmp_path: Path) -> None:
    s = live
    DeviceKey.generate().save(tmp_path / "command.key")
    enroll_service(s, "models", f"{s.mqtt.ingest_client_id}-models").save(tmp_path / "models.json")
    revoked = DeviceKey.generate()
    enrol(s, revoked)
    revoke_device(s, revoked.device_id)
    args = ("--command-key", str(tmp_path / "command.key"), "--credentials", str(tmp_path / "models.json"))
    for device, why in ((DeviceKey.generate().device_id, "not enrolled"), (revoked.device_id, "revoked")):
        done = _cli(s, str(small_model), "--device", device, *args)
        assert done.returncode == 1 and why in done.stdout, done.stdout + done.stderr
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    enrolled = DeviceKey.generate()
    enrol(s, enrolled)
    done = _cli(s, str(broken), "--device", enrolled.device_id, *args)
    assert done.returncode == 1 and "no model a device can run" in done.stdout, done.stdout + done.stderr
    seen: list[bytes] = []
    observer = as_service(s, "observer")
    c = mqtt_client(observer.mqtt, "nothing-retained", clean_session=True)
    c.on_message = lambda cl, u, m: seen.append(m.payload)
    c.on_connect = lambda cl, *_: cl.subscribe(f"{s.edge.model_updates_topic}/#", qos=1)
    c.connect(s.mqtt.host, s.mqtt.port)
    c.loop_start()
    try:
        wait_until(lambda: c.is_connected(), 10, "the observer to connect", every_s=0.1)
        time.sleep(1.0)  # a retained message arrives right after the subscription
    finally:
        c.disconnect()
        c.loop_stop()
    assert seen == []
