"""An intersection's edge agent: senses its approaches, publishes demand signed, and runs the advice.

Every second its `controller` decides the light from the lane-area zones it reads
through TraCI/libsumo (the simulated stand-in for a real controller's detector
cards; see `detectors`). Each interval it publishes one signed reading with the
demand per green, and hands the latest signal advice from its MQTT command topic
to the controller, which keeps the safety bounds whatever the advice says. Only
advice signed by the command key the device was deployed with, naming this
device, unexpired and numbered above the last one accepted (persisted, so a
restart cannot replay) counts; when no such valid fresh advice arrived for
`fallback_after` intervals the light falls back (see `SignalController.fall_back`),
so replaying old genuine advice cannot keep steering it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from citygrid.commands import (
    AdviceRejected,
    Command,
    CommandGuard,
    CommandRejected,
    CommandVerifier,
    ExpiredCommand,
    SignalAdvice,
    refused,
)
from citygrid.edge.traffic.controller import SignalController
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, sign_reading
from citygrid.settings import TrafficSettings
from citygrid.signing import DeviceKey
from citygrid.topics import commands_topic, readings_topic

if TYPE_CHECKING:
    # Only a type: an intersection without a model must not need onnxruntime installed.
    from citygrid.edge.inference import Scorer

log = structlog.get_logger(__name__)
ADVICE_REFUSED = Counter("citygrid_traffic_advice_refused_total",
                         "Signal advice refused: unsigned, forged, expired, replayed, mistargeted, malformed")


class IntersectionAgent:
    """One intersection device: a key, its light, its broker connection and its command topic."""

    def __init__(self, key: DeviceKey, controller: SignalController, publisher: Publisher,
                 commands_root: str, bounds: TrafficSettings, command_public_key: bytes, state_dir: Path,
                 scorer: Scorer | None = None, max_command_bytes: int = 16 * 1024,
                 max_skew_s: int = 300) -> None:
        self.key, self.controller, self.publisher, self.bounds = key, controller, publisher, bounds
        self.scorer = scorer
        self.seq = 0
        self.since_advice = 0
        self.received = 0
        self.applied: list[SignalAdvice] = []
        guard = CommandGuard(Path(state_dir) / f"advice-numbers-{key.device_id}.json")
        self.verifier = CommandVerifier(command_public_key, key.device_id, guard, max_command_bytes,
                                        max_skew_s * 1000)
        self._latest: tuple[SignalAdvice, Command] | None = None
        self._lock = threading.Lock()
        self.topic = readings_topic(publisher.settings.readings_topic, bounds.district, key.device_id)
        self.command_topic = commands_topic(commands_root, bounds.district, key.device_id)
        publisher.subscribe(self.command_topic, lambda msg: self.receive(msg.payload))

    def _refuse(self, error: str) -> None:
        ADVICE_REFUSED.inc()
        log.warning("traffic_advice_refused", tls=self.controller.tls, error=error[:300])

    def receive(self, payload: bytes) -> None:
        """Keep the newest valid advice for this light (called on the MQTT thread: never raises)."""
        try:
            cmd, _ = self.verifier.open(payload, "signal_advice")  # counted and logged when refused
            advice = cmd.advice()
        except CommandRejected:
            ADVICE_REFUSED.inc()
            return
        except Exception:  # one bad message must never stop the MQTT thread (and every later reading)
            log.exception("traffic_advice_callback_failed", tls=self.controller.tls)
            return
        with self._lock:
            self.received += 1
            # Numbers only grow (the guard refused anything else), so the last accepted is the newest.
            self._latest = (advice, cmd)

    def _take_fresh(self) -> SignalAdvice | None:
        with self._lock:
            latest, self._latest = self._latest, None
        if latest is None:
            return None
        advice, cmd = latest
        try:
            self.verifier.check_fresh(cmd, int(time.time() * 1000))
        except ExpiredCommand as exc:
            refused("signal_advice", exc, self.key.device_id)
            ADVICE_REFUSED.inc()
            return None
        return advice

    def step(self, now_s: float) -> None:
        """One second of the light's own decisions (the advice only bounds them)."""
        self.controller.step(now_s)

    def tick(self, ts_ms: int) -> Reading:
        """One interval: publish the approach counts, then run the newest advice or fall back."""
        reading = self._publish_counts(ts_ms)
        advice = self._take_fresh()
        if advice is not None:
            try:
                self.controller.apply(advice)
                self.applied.append(advice)
                self.since_advice = 0
                return reading
            except AdviceRejected as exc:
                self._refuse(str(exc))
        # No valid fresh advice this interval: after `fallback_after` of them the light drops the advice.
        self.since_advice += 1
        if self.controller.advised and self.since_advice >= self.bounds.fallback_after:
            self.controller.fall_back()
        return reading

    def _publish_counts(self, ts_ms: int) -> Reading:
        demand = self.controller.reading_values()
        # `vehicles` is the value the stream's generic learner follows for traffic devices.
        values = {"vehicles": sum(v for k, v in demand.items() if k.startswith("d.")), **demand}
        model = self.scorer.score(ts_ms, values) if self.scorer else None
        reading = Reading(device=self.key.device_id, seq=self.seq, ts_ms=ts_ms, kind="traffic",
                          values=values, model=model)
        self.seq += 1
        self.publisher.publish_async(self.topic, sign_reading(reading, self.key).encode())
        return reading
