"""Model updates over the real broker: a forged update is refused and the old model keeps scoring;
a genuine one is swapped in; a signed but broken one is refused and the agent keeps the old."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support import as_service, enrol, wait_until

from citygrid.commands import sign_model_update
from citygrid.edge.agent import EdgeAgent
from citygrid.edge.model_update import ModelStore
from citygrid.edge.store_forward import Outbox
from citygrid.mqtt import Publisher, mqtt_client
from citygrid.reading import SignedReading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.topics import model_updates_topic

from .test_store_forward import Paced, meter

pytestmark = pytest.mark.timeout(120)


def test_forged_update_refused_genuine_installed_broken_rolled_back(
        live: CitygridSettings, small_models: dict[str, Path], tmp_path: Path) -> None:
    s = live
    operator, forger, key = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    store = ModelStore(tmp_path / "models", operator.public_key,
                       max_update_bytes=s.edge.max_model_update_bytes)
    store.install(small_models["v1"], serial=1)
    topic = model_updates_topic(s.edge.model_updates_topic, key.device_id)
    device, operator_id, observer = enrol(s, key), as_service(s, "models"), as_service(s, "observer")

    seen: list[str] = []
    # A clean session: the observer leaves nothing queued for itself on the shared broker.
    watcher = mqtt_client(observer.mqtt, f"watch-{key.device_id}", clean_session=True)
    watcher.on_message = lambda c, u, m: seen.append(SignedReading.decode(m.payload).reading().model.version)
    watcher.connect(s.mqtt.host, s.mqtt.port)
    watcher.subscribe(f"{s.mqtt.readings_topic}/#", qos=1)
    watcher.loop_start()
    time.sleep(0.3)

    pub = Publisher(device.mqtt, client_id=f"edge-{key.device_id}")
    pub.connect()
    driver = meter()
    driver.steps = 10_000
    paced = Paced(driver, 0.01)
    agent = EdgeAgent(key, paced, pub, outbox=Outbox(tmp_path / "outbox.db"),
                      models=store, updates_topic=topic)
    runner = threading.Thread(target=lambda: agent.run(drain_timeout_s=10), daemon=True)
    runner.start()

    operator_side = Publisher(operator_id.mqtt, client_id=f"operator-{key.device_id}")
    operator_side.connect()
    try:
        v2 = small_models["v2"].read_bytes()
        me = key.device_id
        operator_side.publish(topic, sign_model_update(v2, "load_nowcast", "2", 2, forger, me))
        time.sleep(1.0)
        assert agent.model_version == "load_nowcast:1"
        assert store.current().version == "1"

        garbage = b"not an onnx graph" * 10
        operator_side.publish(topic, sign_model_update(garbage, "load_nowcast", "3", 3, operator, me))
        time.sleep(1.0)
        assert agent.model_version == "load_nowcast:1"

        operator_side.publish(topic, sign_model_update(v2, "load_nowcast", "2", 4, operator, me))
        wait_until(lambda: agent.model_version == "load_nowcast:2", 10, "the genuine update to be installed",
                   every_s=0.1)
        time.sleep(0.5)
    finally:
        paced.stop.set()
        runner.join(20)
        operator_side.close()
        pub.close()
    assert store.current().version == "2"
    assert store.rollback().version == "1"  # the previous model was kept
    try:
        wait_until(lambda: "2" in seen, 10, "a reading scored by the new model", every_s=0.1)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert seen[0] == "1" and "2" in seen
    assert seen.index("2") > 0 and set(seen) == {"1", "2"}
