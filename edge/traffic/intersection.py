"""An intersection's edge agent: counts its approaches, publishes them signed, and runs the advised plan.

Each interval it reads its induction loops through TraCI/libsumo (the simulated
stand-in for a real controller's loop cards; see `detectors`), publishes one
signed reading with the count of every approach lane, and hands the latest
signal advice from its MQTT command topic to its `controller`, which keeps the
safety bounds whatever the advice says; when advice stops arriving for
`fallback_after` intervals the light returns to its own stored plan.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from citygrid.commands import AdviceRejected, SignalAdvice
from citygrid.edge.traffic.controller import SignalController
from citygrid.edge.traffic.detectors import interval_counts
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, sign_reading
from citygrid.settings import TrafficSettings
from citygrid.signing import DeviceKey
from citygrid.topics import commands_topic, readings_topic

if TYPE_CHECKING:
    # Only a type: an intersection without a model must not need onnxruntime installed.
    from citygrid.edge.inference import Scorer

log = structlog.get_logger(__name__)
ADVICE_REFUSED = Counter("citygrid_traffic_advice_refused_total", "Signal advice that could not be read")


class IntersectionAgent:
    """One intersection device: a key, its light, its broker connection and its command topic."""

    def __init__(self, key: DeviceKey, controller: SignalController, publisher: Publisher,
                 commands_root: str, bounds: TrafficSettings, scorer: Scorer | None = None) -> None:
        self.key, self.controller, self.publisher, self.bounds = key, controller, publisher, bounds
        self.scorer = scorer
        self.seq = 0
        self.since_advice = 0
        self.received = 0
        self.applied: list[SignalAdvice] = []
        self._latest: SignalAdvice | None = None
        self._lock = threading.Lock()
        self.topic = readings_topic(publisher.settings.readings_topic, bounds.district, key.device_id)
        self.command_topic = commands_topic(commands_root, bounds.district, key.device_id)
        publisher.subscribe(self.command_topic, lambda msg: self.receive(msg.payload))

    def _refuse(self, error: str) -> None:
        ADVICE_REFUSED.inc()
        log.warning("traffic_advice_refused", tls=self.controller.tls, error=error)

    def receive(self, payload: bytes) -> None:
        """Keep the newest advice for this light (called on the MQTT thread)."""
        try:
            advice = SignalAdvice.decode(payload)
        except AdviceRejected as exc:
            self._refuse(str(exc))
            return
        if advice.device != self.key.device_id:
            self._refuse(f"advice is for {advice.device}")
            return
        with self._lock:
            self.received += 1
            if self._latest is None or advice.issued_ms > self._latest.issued_ms:
                self._latest = advice

    def tick(self, ts_ms: int) -> Reading:
        """One interval: publish the approach counts, then run the newest advice or fall back."""
        reading = self._publish_counts(ts_ms)
        with self._lock:
            advice, self._latest = self._latest, None
        if advice is None:
            self.since_advice += 1
            if self.controller.advised and self.since_advice >= self.bounds.fallback_after:
                self.controller.fall_back()
            return reading
        try:
            self.controller.apply(advice)
            self.applied.append(advice)
            self.since_advice = 0
        except AdviceRejected as exc:
            self._refuse(str(exc))
        return reading

    def _publish_counts(self, ts_ms: int) -> Reading:
        values = interval_counts(self.controller.sim, self.controller.layout)
        values["vehicles"] = sum(values.values())
        # Named to sort after the lane counts: the generic learner follows a device's first value.
        values["plan_advised"] = 1.0 if self.controller.advised else 0.0
        values["plan_intergreen_s"] = self.controller.layout.intergreens_s
        model = self.scorer.score(ts_ms, values) if self.scorer else None
        reading = Reading(device=self.key.device_id, seq=self.seq, ts_ms=ts_ms, kind="traffic",
                          values=values, model=model)
        self.seq += 1
        self.publisher.publish_async(self.topic, sign_reading(reading, self.key).encode())
        return reading
