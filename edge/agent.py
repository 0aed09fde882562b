"""The edge agent loop: read a driver, score with the ONNX model, sign, commit to the outbox, send.

Sequence numbers are per device and strictly increasing, which is what lets
the ingest reject replays and duplicates; with an outbox they are stored with
the readings, so a restarted agent continues where the killed one stopped.
Without an outbox (simulated fleets) readings go straight to the broker.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from citygrid.commands import CommandRejected
from citygrid.edge.drivers import Driver
from citygrid.edge.errors import ModelError
from citygrid.edge.inference import Scorer
from citygrid.edge.model_update import ModelStore
from citygrid.edge.outbox_sender import OutboxSender
from citygrid.edge.store_forward import Outbox
from citygrid.mqtt import Publisher
from citygrid.reading import ModelOutput, Reading, SignedReading, sign_reading
from citygrid.signing import DeviceKey
from citygrid.topics import readings_topic

log = structlog.get_logger(__name__)
SIGNED = Counter("citygrid_edge_readings_signed_total", "Readings measured, scored and signed")


@dataclass
class EdgeAgent:
    """One device: its key, its driver, its broker connection, and optionally an outbox and models."""

    key: DeviceKey
    driver: Driver
    publisher: Publisher
    district: str = "d1"
    next_seq: int = 0
    outbox: Outbox | None = None
    models: ModelStore | None = None
    updates_topic: str | None = None
    commit_every: int = 1
    max_inflight: int = 1000
    _scorer: Scorer | None = field(default=None, init=False, repr=False)
    _updates: queue.Queue[bytes] = field(default_factory=queue.Queue, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.outbox is not None:
            self.next_seq = self.outbox.next_seq(self.next_seq)
        if self.models is not None:
            model = self.models.current()
            self._scorer = Scorer(model) if model else None
            if self.updates_topic:
                self.publisher.subscribe(self.updates_topic, lambda msg: self.receive_update(msg.payload))

    def receive_update(self, payload: bytes) -> None:
        """Queue a model update for the measuring loop (called on the MQTT thread: never raises, and an
        oversized update is refused here, on its length, before it is kept)."""
        try:
            if self.models is None:
                return
            if len(payload) > self.models.max_update_bytes:
                self.models.apply(payload, self.key.device_id)  # refuses, counts and logs on the length
            self._updates.put(payload)
        except CommandRejected:
            return
        except Exception:  # one bad message must never stop the MQTT thread (and every later reading)
            log.exception("model_update_callback_failed")

    @property
    def model_version(self) -> str | None:
        """Name and version of the model in use, for logs and tests."""
        return f"{self._scorer.model.name}:{self._scorer.model.version}" if self._scorer else None

    def apply_pending_updates(self) -> None:
        """Install model updates that arrived since the last reading (refused ones change nothing)."""
        while not self._updates.empty():
            payload = self._updates.get_nowait()
            try:
                self._scorer = Scorer(self.models.apply(payload, self.key.device_id))
            except CommandRejected:
                continue  # logged and counted by the store; the current model keeps serving
            except Exception:  # a fault in one update must not stop the device measuring
                log.exception("model_update_failed_unexpectedly")

    def _score(self, ts_ms: int, values: dict[str, float]) -> ModelOutput | None:
        if self._scorer is None:
            return None
        try:
            return self._scorer.score(ts_ms, values)
        except ModelError as exc:
            log.error("model_failed_in_use", error=str(exc), model=self.model_version)
            previous = self.models.rollback() if self.models else None
            self._scorer = Scorer(previous) if previous else None
            return self._scorer.score(ts_ms, values) if self._scorer else None

    def make_reading(self, ts_ms: int, values: dict[str, float]) -> SignedReading:
        """Stamp, score, number and sign one measurement."""
        reading = Reading(device=self.key.device_id, seq=self.next_seq, ts_ms=ts_ms,
                          kind=self.driver.kind, values=values, model=self._score(ts_ms, values))
        self.next_seq += 1
        SIGNED.inc()
        return sign_reading(reading, self.key)

    def run(self, limit: int | None = None, drain_timeout_s: float = 30.0) -> int:
        """Measure until the driver ends (or `limit`); return how many readings were made.

        With an outbox, returns after everything is acknowledged or `drain_timeout_s` passed
        (unsent readings stay on disk for the next run)."""
        if self.outbox is None:
            return self._run_direct(limit)
        topic = readings_topic(self.publisher.settings.readings_topic, self.district, self.key.device_id)
        sender = OutboxSender(self.outbox, self.publisher, self.max_inflight)
        stop = threading.Event()
        thread = threading.Thread(target=sender.run, args=(stop,), name="outbox-sender", daemon=True)
        thread.start()
        made, batch = 0, []
        try:
            for ts_ms, values in self.driver.measurements():
                if limit is not None and made >= limit:
                    break
                self.apply_pending_updates()
                seq = self.next_seq
                batch.append((seq, topic, self.make_reading(ts_ms, values).encode()))
                made += 1
                if len(batch) >= self.commit_every:
                    self.outbox.put_many(batch)
                    batch = []
                    sender.wake.set()
            self.outbox.put_many(batch)
        finally:
            stop.set()
            thread.join()
        if not sender.drain(drain_timeout_s):
            log.warning("outbox_not_drained", left=len(self.outbox), timeout_s=drain_timeout_s)
        return made

    def _run_direct(self, limit: int | None) -> int:
        topic = readings_topic(self.publisher.settings.readings_topic, self.district, self.key.device_id)
        pending = []
        sent = 0
        for ts_ms, values in self.driver.measurements():
            if limit is not None and sent >= limit:
                break
            pending.append(self.publisher.publish_async(topic, self.make_reading(ts_ms, values).encode()))
            sent += 1
        for info in pending:
            info.wait_for_publish(30)
        return sent
