"""The intersection agent's command handling without a broker: only valid fresh signed advice moves the
light; garbage never raises; replayed genuine advice cannot keep the light off its fallback."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from citygrid.commands import CommandIssuer, SignalAdvice
from citygrid.edge.traffic.controller import SignalController
from citygrid.edge.traffic.intersection import IntersectionAgent
from citygrid.settings import MqttSettings, TrafficSettings
from citygrid.signing import DeviceKey

from .test_controller import FakeSim

B = TrafficSettings()


@dataclass
class RecordingPublisher:
    """The publisher's surface the agent uses, recording what it publishes (no broker: pure logic)."""

    settings: MqttSettings = field(default_factory=MqttSettings)
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def subscribe(self, topic: str, handler) -> None:
        self.topic = topic

    def publish_async(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))


T0 = 1_790_000_000_000


def agent(tmp_path: Path, authority: DeviceKey, key: DeviceKey | None = None) -> IntersectionAgent:
    return IntersectionAgent(key or DeviceKey.generate(), SignalController(FakeSim(), "j1", B),
                             RecordingPublisher(), "cmd", B, authority.public_key, tmp_path)


def test_garbage_and_unsigned_advice_never_move_the_light(tmp_path: Path) -> None:
    authority = DeviceKey.generate()
    a = agent(tmp_path, authority)
    me = a.key.device_id
    unsigned = b'{"device": "%s", "greens_s": [60, 5], "cycle_s": 71, "issued_ms": 1}' % me.encode()
    forged = CommandIssuer(DeviceKey.generate()).advice(SignalAdvice(me, (60.0, 5.0), 71, 1), 60)
    other = CommandIssuer(authority).advice(SignalAdvice("dother", (60.0, 5.0), 71, 1), 60)
    for payload in (b"[" * 100_000, b"\xc1" * 10, unsigned, forged, other, b""):
        a.receive(payload)  # never raises
    a.tick(T0)
    assert not a.controller.advised and a.received == 0
    assert a.controller.sim.trafficlight.program == "0"
    assert len(a.publisher.published) == 1  # and it keeps publishing its counts


def test_replayed_genuine_advice_does_not_keep_the_light_off_its_plan(tmp_path: Path) -> None:
    authority = DeviceKey.generate()
    a = agent(tmp_path, authority)
    genuine = CommandIssuer(authority).advice(SignalAdvice(a.key.device_id, (40.0, 20.0), 66.0, 1), 600)
    a.receive(genuine)
    a.tick(T0)
    assert a.controller.advised
    for k in range(B.fallback_after):
        a.receive(genuine)  # the advisor has stopped; an attacker replays its last advice
        a.tick(T0 + k + 1)
    assert not a.controller.advised and a.controller.sim.trafficlight.program == "0"
    assert a.received == 1
    # A restarted agent remembers the number, so the replay is refused there too.
    restarted = agent(tmp_path, authority, a.key)
    restarted.receive(genuine)
    assert restarted.received == 0


def test_advice_that_expired_before_the_tick_is_not_applied(tmp_path: Path) -> None:
    authority = DeviceKey.generate()
    a = agent(tmp_path, authority)
    a.receive(CommandIssuer(authority).advice(SignalAdvice(a.key.device_id, (40.0, 20.0), 66.0, 1), 0.05))
    assert a.received == 1
    time.sleep(0.1)
    a.tick(T0)
    assert not a.controller.advised
