"""Hostile commands to devices on the real TLS broker: each refused with its reason counted, the light
keeping its own plan (a real SUMO light through libsumo), the agent still publishing, and a genuine
command still acted on afterwards (so every refusal is the device's check, not a dead connection).

The attacker holds a service's broker identity (the advisor's, the model publisher's) but not the command
key: the broker lets it publish on the command and model topics, so only the device's own checks stand.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libsumo as sim
import msgpack
import pytest
from prometheus_client import REGISTRY
from support import as_service, enrol, wait_until

from citygrid.commands import CommandIssuer, SignalAdvice, sign_model_update
from citygrid.edge.agent import EdgeAgent
from citygrid.edge.model_update import ModelStore
from citygrid.edge.store_forward import Outbox
from citygrid.edge.traffic.controller import ADVISED_PROGRAM, SignalController
from citygrid.edge.traffic.intersection import IntersectionAgent
from citygrid.mqtt import Publisher, PublishError, mqtt_client
from citygrid.reading import SignedReading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.traffic.evaluation import sumo_command
from citygrid.sim.traffic.networks import grid_case, prepare
from citygrid.sim.traffic.scenario import Scenario
from citygrid.topics import model_updates_topic

from .test_store_forward import Paced, meter

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]


def refused(kind: str, reason: str) -> float:
    return REGISTRY.get_sample_value("citygrid_edge_commands_refused_total",
                                     {"kind": kind, "reason": reason}) or 0.0


def updates(outcome: str) -> float:
    return REGISTRY.get_sample_value("citygrid_edge_model_updates_total", {"outcome": outcome}) or 0.0


class Watcher:
    """The test's observer identity on the readings root: which seqs each device published."""

    def __init__(self, s: CitygridSettings) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.client = mqtt_client(as_service(s, "observer").mqtt, "unused", clean_session=True)
        self.client.on_message = lambda c, u, m: self._seen(m.payload)
        ready = threading.Event()
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{s.mqtt.readings_topic}/#", qos=1)
        self.client.connect(s.mqtt.host, s.mqtt.port)
        self.client.loop_start()
        assert ready.wait(10)

    def _seen(self, payload: bytes) -> None:
        r = SignedReading.decode(payload).reading()
        self.seqs.setdefault(r.device, []).append(r.seq)

    def count(self, device: str) -> int:
        return len(self.seqs.get(device, []))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Light:
    """One real SUMO light run by an enrolled intersection agent, plus the command authority and an
    attacker holding the advisor's broker identity."""

    def __init__(self, live: CitygridSettings, tmp_path: Path) -> None:
        self.s, self.state_dir = live, tmp_path / "lights"
        self.tls = sim.trafficlight.getIDList()[0]
        self.key, authority = DeviceKey.generate(), DeviceKey.generate()
        self.authority_public = authority.public_key
        self.issuer = CommandIssuer(authority)
        self.device = enrol(live, self.key, live.traffic.district, "traffic")
        self.t = 0
        self.agent = self.start_agent()
        self.attacker = Publisher(as_service(live, "advisor").mqtt, client_id="unused")
        self.attacker.connect()
        self.watcher = Watcher(live)

    def start_agent(self) -> IntersectionAgent:
        pub = Publisher(self.device.mqtt, client_id="unused")
        agent = IntersectionAgent(self.key, SignalController(sim, self.tls, self.s.traffic), pub,
                                  self.s.mqtt.commands_topic, self.s.traffic, self.authority_public,
                                  self.state_dir)
        pub.connect()
        time.sleep(0.5)  # the command subscription (sent on connect) in place before anyone publishes
        return agent

    def restart_agent(self) -> None:
        self.agent.publisher.close()
        self.agent = self.start_agent()

    def genuine(self, ttl_s: float | None = None) -> bytes:
        """Signed advice that differs from the light's own greens."""
        layout = self.agent.controller.layout
        greens = tuple(g + 7.0 for g in layout.own_greens_s)
        advice = SignalAdvice(self.key.device_id, greens, sum(greens) + layout.intergreens_s,
                              int(time.time() * 1000))
        return self.issuer.advice(advice, self.s.traffic.advice_ttl_s if ttl_s is None else ttl_s)

    def send(self, payload: bytes) -> None:
        self.attacker.publish(self.agent.command_topic, payload)

    def tick(self) -> None:
        self.t += self.s.traffic.interval_s
        sim.simulationStep(float(self.t))
        self.agent.tick(int(time.time() * 1000))

    def on_own_plan(self) -> bool:
        return (not self.agent.controller.advised
                and sim.trafficlight.getProgram(self.tls) == self.agent.controller.layout.program)

    def on_advice(self) -> bool:
        return self.agent.controller.advised and sim.trafficlight.getProgram(self.tls) == ADVISED_PROGRAM

    def close(self) -> None:
        self.watcher.close()
        self.attacker.close()
        self.agent.publisher.close()


@pytest.fixture
def light(live: CitygridSettings, tmp_path: Path) -> Iterator[Light]:
    cache = live.paths.cache_dir / "sumo"
    case = grid_case(cache, Scenario(seed=1, interval_s=live.traffic.interval_s), "grid")
    sim.start(sumo_command(prepare(cache, case), "citygrid", 1, tmp_path / "tripinfo.xml"))
    the_light = None
    try:
        the_light = Light(live, tmp_path)
        yield the_light
    finally:
        if the_light is not None:
            the_light.close()
        sim.close()


def _wait_refused(kind: str, reason: str, before: float, n: int = 1) -> None:
    wait_until(lambda: refused(kind, reason) >= before + n, 10, f"{n} {kind} refused as {reason}", 0.05)


def test_unsigned_and_forged_advice_leave_the_light_on_its_own_plan(light: Light) -> None:
    layout = light.agent.controller.layout
    n = len(layout.green)
    before = {r: refused("signal_advice", r) for r in ("malformed", "bad_signature", "wrong_target")}
    # The attack of the issue: plain JSON with the attacker's greens.
    light.send(json.dumps({"device": light.key.device_id, "greens_s": [60.0] * n, "cycle_s": 60.0 * n,
                           "issued_ms": int(time.time() * 1000)}).encode())
    # Well-formed advice signed by a key the device does not trust.
    forged = CommandIssuer(DeviceKey.generate()).advice(
        SignalAdvice(light.key.device_id, (60.0,) * n, 60.0 * n, int(time.time() * 1000)), 60)
    light.send(forged)
    # Genuine advice for another light, replayed onto this one.
    other = light.issuer.advice(SignalAdvice("dsomeotherlight", (60.0,) * n, 60.0 * n, 0), 60)
    light.send(other)
    _wait_refused("signal_advice", "malformed", before["malformed"])
    _wait_refused("signal_advice", "bad_signature", before["bad_signature"])
    _wait_refused("signal_advice", "wrong_target", before["wrong_target"])
    for _ in range(3):
        light.tick()
        assert light.on_own_plan(), "the light runs a plan it was not sent by its command authority"
    assert light.agent.received == 0 and light.agent.applied == []

    light.send(light.genuine())  # the same path with a genuine command does switch the light
    wait_until(lambda: light.agent.received == 1, 10, "the genuine advice", 0.05)
    light.tick()
    assert light.on_advice()


def test_replayed_old_advice_does_not_keep_the_light_off_its_fallback(light: Light) -> None:
    old = light.genuine()
    light.send(old)
    wait_until(lambda: light.agent.received == 1, 10, "the genuine advice", 0.05)
    light.tick()
    assert light.on_advice()

    # The advisor stops; the attacker replays its last advice every interval.
    before = refused("signal_advice", "replayed")
    for k in range(light.s.traffic.fallback_after):
        light.send(old)
        _wait_refused("signal_advice", "replayed", before, k + 1)
        light.tick()
    assert light.on_own_plan(), "replayed advice kept the light off its own plan"

    # Nor after a restart: the command number the device accepted is persisted.
    light.restart_agent()
    light.send(old)
    _wait_refused("signal_advice", "replayed", before, light.s.traffic.fallback_after + 1)
    light.tick()
    assert light.on_own_plan() and light.agent.received == 0

    # Genuine advice that expired before it arrived (held back by the attacker) is refused as well.
    held = light.genuine(ttl_s=0.5)
    time.sleep(1.0)
    expired = refused("signal_advice", "expired")
    light.send(held)
    _wait_refused("signal_advice", "expired", expired)
    light.tick()
    assert light.on_own_plan()


def test_bracket_floods_are_refused_and_the_agent_keeps_publishing(light: Light) -> None:
    before = {r: refused("signal_advice", r) for r in ("too_large", "malformed", "bad_signature")}
    light.tick()
    light.send(b"[" * 100_000)  # the attack: beyond the device's command size, never parsed
    light.send(b"[" * 10_000)  # within the size: not a command envelope
    light.send(msgpack.packb({"b": b"[" * 5000, "s": b"\0" * 64}))  # an envelope around junk, unsigned
    _wait_refused("signal_advice", "too_large", before["too_large"])
    _wait_refused("signal_advice", "malformed", before["malformed"])
    _wait_refused("signal_advice", "bad_signature", before["bad_signature"])
    published = light.watcher.count(light.key.device_id)
    for _ in range(3):
        light.tick()
        assert light.on_own_plan()
    wait_until(lambda: light.watcher.count(light.key.device_id) >= published + 3, 10,
               "readings published after the flood", 0.05)
    # The MQTT thread is alive: genuine advice still arrives and is run.
    light.send(light.genuine())
    wait_until(lambda: light.agent.received == 1, 10, "genuine advice after the flood", 0.05)
    light.tick()
    assert light.on_advice()


class Meter:
    """An edge agent scoring with a model store, running on a thread with a paced driver."""

    def __init__(self, s: CitygridSettings, key: DeviceKey, directory: Path, authority: DeviceKey,
                 max_update_bytes: int | None = None) -> None:
        self.s, self.key, self.dir = s, key, directory
        self.store = ModelStore(directory / "models", authority.public_key,
                                max_update_bytes=max_update_bytes or s.edge.max_model_update_bytes)
        self.topic = model_updates_topic(s.edge.model_updates_topic, key.device_id)
        self.device = enrol(s, key)
        self.start()

    def start(self) -> None:
        self.pub = Publisher(self.device.mqtt, client_id="unused")
        self.pub.connect()
        driver = meter()
        driver.steps = 10_000
        self.paced = Paced(driver, 0.01)
        self.agent = EdgeAgent(self.key, self.paced, self.pub, outbox=Outbox(self.dir / "outbox.db"),
                               models=self.store, updates_topic=self.topic)
        self.thread = threading.Thread(target=lambda: self.agent.run(drain_timeout_s=10), daemon=True)
        self.thread.start()
        time.sleep(0.5)  # the update subscription in place before the operator publishes

    def stop(self) -> None:
        self.paced.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive()
        self.pub.close()


@pytest.fixture
def operator(live: CitygridSettings) -> Iterator[Publisher]:
    """A publisher with the model publisher's broker identity (and, in these tests, its key or not)."""
    pub = Publisher(as_service(live, "models").mqtt, client_id="unused")
    pub.connect()
    yield pub
    pub.close()


def test_a_genuine_update_for_one_device_is_refused_by_another(
        live: CitygridSettings, small_models: dict[str, Path], tmp_path: Path, operator: Publisher) -> None:
    authority, a, b = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    meter_b = Meter(live, b, tmp_path / "b", authority)
    meter_b.store.install(small_models["v1"], serial=1)
    meter_b.stop()
    meter_b.start()  # now scoring with v1
    v2 = small_models["v2"].read_bytes()
    try:
        before = refused("model_update", "wrong_target")
        operator.publish(meter_b.topic, sign_model_update(v2, "load_nowcast", "2", 2, authority, a.device_id))
        _wait_refused("model_update", "wrong_target", before)
        assert meter_b.agent.model_version == "load_nowcast:1"
        operator.publish(meter_b.topic, sign_model_update(v2, "load_nowcast", "2", 2, authority, b.device_id))
        wait_until(lambda: meter_b.agent.model_version == "load_nowcast:2", 10, "B's own update", 0.1)
    finally:
        meter_b.stop()


def test_a_retained_update_with_swapped_bytes_is_refused_once_without_a_crash_loop(
        live: CitygridSettings, small_models: dict[str, Path], tmp_path: Path, operator: Publisher) -> None:
    authority, key = DeviceKey.generate(), DeviceKey.generate()
    m = Meter(live, key, tmp_path / "m", authority)
    m.store.install(small_models["v1"], serial=1)
    m.stop()
    genuine = msgpack.unpackb(sign_model_update(small_models["v2"].read_bytes(), "load_nowcast", "2", 2,
                                                authority, key.device_id))
    swapped = msgpack.packb({**genuine, "a": b"\x08\x07" + genuine["a"][2:]})  # same size, other bytes
    watcher = Watcher(live)
    before, skipped = refused("model_update", "bad_model_update"), updates("skipped")
    try:
        operator.client.publish(m.topic, swapped, qos=1, retain=True).wait_for_publish(10)
        m.start()
        _wait_refused("model_update", "bad_model_update", before)
        seen = watcher.count(key.device_id)
        wait_until(lambda: watcher.count(key.device_id) > seen + 5, 20, "readings after the refusal", 0.1)
        assert m.agent.model_version == "load_nowcast:1" and m.thread.is_alive()
        m.stop()

        for _ in range(2):  # every restart gets the retained update again: skipped, the agent runs on
            m.start()
            seen = watcher.count(key.device_id)
            wait_until(lambda s=seen: watcher.count(key.device_id) > s + 5, 20, "readings after a restart",
                       0.1)
            m.stop()
        assert updates("skipped") == skipped + 2
        assert refused("model_update", "bad_model_update") == before + 1
        assert m.store.current().version == "1"
    finally:
        operator.client.publish(m.topic, b"", qos=1, retain=True).wait_for_publish(10)
        watcher.close()


def test_an_oversized_update_is_never_delivered_or_held(
        live: CitygridSettings, small_models: dict[str, Path], tmp_path: Path, operator: Publisher) -> None:
    authority, key = DeviceKey.generate(), DeviceKey.generate()
    limit = 1024 * 1024
    m = Meter(live, key, tmp_path / "m", authority, max_update_bytes=limit)
    m.store.install(small_models["v1"], serial=1)
    m.stop()
    m.start()
    received: list[int] = []
    original = m.agent.receive_update
    m.agent.receive_update = lambda payload: (received.append(len(payload)), original(payload))[1]
    try:
        # 40 MB is beyond the broker's max_packet_size: the broker drops the sender, the device never sees it.
        assert live.mqtt.max_message_bytes < 40 * 1024 * 1024
        with pytest.raises(PublishError):
            operator.publish(m.topic, b"\0" * (40 * 1024 * 1024), timeout_s=10)
        # Beyond this device's own limit but within the broker's: refused on its length, before parsing.
        before = refused("model_update", "too_large")
        big = sign_model_update(b"\0" * (2 * limit), "load_nowcast", "9", 9, authority, key.device_id)
        sender = Publisher(as_service(live, "models").mqtt, client_id="unused")
        sender.connect()
        try:
            sender.publish(m.topic, big)
        finally:
            sender.close()
        _wait_refused("model_update", "too_large", before)
        assert received == [len(big)], "the broker delivered a message beyond its max_packet_size"
        assert m.agent._updates.empty()  # refused on the MQTT thread: nothing of it kept for later
        assert m.agent.model_version == "load_nowcast:1" and m.thread.is_alive()
    finally:
        m.stop()
