"""MQTT → Kafka ingest: verify each reading, write it keyed by device, dead-letter the rest.

A reading's MQTT acknowledgement is sent only after Kafka has acknowledged the
record (manual acks on a persistent session), so a crash or a Kafka outage at
any moment leaves unacknowledged readings with the broker, which delivers
them again when the ingest reconnects. The producer is idempotent, so its own
retries never duplicate a record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from citygrid.errors import ReadingRejected, UnknownDevice
from citygrid.mqtt import mqtt_client
from citygrid.reading import Reading, reading_or_none
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceRegistry
from citygrid.stream.kafka_topics import read_tail
from citygrid.stream.validation import IngestValidator, ReplayWindow
from citygrid.topics import DISTRICT_HEADER, parse_readings_topic, readings_filter

log = structlog.get_logger(__name__)

ACCEPTED = Counter("citygrid_ingest_accepted_total", "Readings verified and written to Kafka")
REJECTED = Counter("citygrid_ingest_rejected_total", "Readings dead-lettered", ["reason"])
LATENCY = Histogram(
    "citygrid_ingest_latency_seconds", "MQTT receipt to Kafka acknowledgement",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def restore_window(window: ReplayWindow, settings: CitygridSettings) -> int:
    """Mark the readings already in Kafka's tail as accepted; return how many.

    A restarted ingest otherwise forgets what it wrote, and the broker redelivers
    every reading whose MQTT ack was lost in the crash: they would enter Kafka twice.
    """
    records = read_tail(settings.kafka, settings.kafka.readings_topic, settings.stream.ingest_replay_tail)
    for rec in records:
        # Only the ingest writes this topic, but a bad record must not stop it.
        if (reading := reading_or_none(rec.value)) is not None:
            window.accept(reading.device, reading.seq)
    return len(records)


def prepare_session(settings: CitygridSettings) -> None:
    """Create the ingest's persistent MQTT session and subscription, then leave.

    From then on the broker queues readings for the ingest even while it is not
    running, so devices may start publishing before the ingest first starts.
    """
    client = mqtt_client(settings.mqtt, settings.mqtt.ingest_client_id, manual_ack=False)
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(readings_filter(settings.mqtt.readings_topic), qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise ConnectionError("the broker did not confirm the ingest's subscription")
    finally:
        client.disconnect()
        client.loop_stop()


class Ingest:
    """One ingest process."""

    def __init__(self, settings: CitygridSettings) -> None:
        self.settings = settings
        self.registry_path = Path(settings.paths.device_registry)
        self._registry_mtime = 0.0
        self.validator = IngestValidator(self._load_registry())
        restored = restore_window(self.validator.window, settings)
        log.info("replay_window_restored", records=restored)
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5, batch_size=256 * 1024, max_in_flight_requests_per_connection=5,
            # Within delivery_timeout_ms (2 min) a Kafka outage is ridden out by retrying; reconnect
            # quickly once the broker is back rather than after kafka-python's 30 s backoff cap.
            reconnect_backoff_max_ms=1000,
        )
        self.client = mqtt_client(settings.mqtt, settings.mqtt.ingest_client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.failed = threading.Event()

    def _load_registry(self) -> DeviceRegistry:
        self._registry_mtime = self.registry_path.stat().st_mtime if self.registry_path.exists() else 0
        return DeviceRegistry.load(self.registry_path)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt_connect_refused", reason=str(reason_code))
            return
        client.subscribe(readings_filter(self.settings.mqtt.readings_topic), qos=1)
        log.info("ingest_subscribed", session_present=flags.session_present)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.handle(msg.payload, msg.topic, msg.mid, msg.qos)

    def handle(self, payload: bytes, topic: str, mid: int, qos: int) -> None:
        """Validate one message and hand it to Kafka; the MQTT ack follows Kafka's."""
        t0 = time.perf_counter()
        now_ms = int(time.time() * 1000)
        try:
            reading = self._check(payload, now_ms)
        except ReadingRejected as exc:
            REJECTED.labels(exc.reason).inc()
            log.info("reading_rejected", reason=exc.reason, error=str(exc), topic=topic)
            dead = DeadLetter.of(payload, topic, exc.reason, str(exc), now_ms)
            self._send(self.settings.kafka.dead_letter_topic, exc.reason.encode(), dead.encode(), [],
                       stored=lambda: self.client.ack(mid, qos), lost=lambda: None)
            return
        parsed = parse_readings_topic(self.settings.mqtt.readings_topic, topic)
        district = parsed[0] if parsed else ""

        def stored() -> None:
            self.client.ack(mid, qos)
            ACCEPTED.inc()
            LATENCY.observe(time.perf_counter() - t0)

        # The district (feeder or intersection) is only in the MQTT topic: keep it for the workers.
        self._send(self.settings.kafka.readings_topic, reading.device.encode(), payload,
                   [(DISTRICT_HEADER, district.encode())], stored=stored,
                   lost=lambda: self.validator.window.forget(reading.device, reading.seq))

    def _check(self, payload: bytes, now_ms: int) -> Reading:
        try:
            return self.validator.check(payload, now_ms)
        except UnknownDevice:
            # A device registered since we loaded the registry: reload once, then decide.
            if not self._registry_changed():
                raise
            self.validator.registry = self._load_registry()
            return self.validator.check(payload, now_ms)

    def _send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
              stored: Callable[[], None], lost: Callable[[], None]) -> None:
        """Write one record; `stored` runs once Kafka acknowledged it, `lost` (then a stop) if it cannot."""
        def failed(exc: Exception) -> None:
            lost()
            self._fail(exc)

        try:
            # Blocks (up to max_block_ms) while the producer's buffer is full: back-pressure on
            # the MQTT loop, so the broker keeps what we cannot take yet.
            fut = self.producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as exc:
            failed(exc)
            return
        fut.add_callback(lambda _meta: stored())
        fut.add_errback(failed)

    def _registry_changed(self) -> bool:
        return self.registry_path.exists() and self.registry_path.stat().st_mtime != self._registry_mtime

    def _fail(self, exc: Exception) -> None:
        # Unacknowledged messages stay with the broker; stopping lets a supervisor
        # restart us and the broker redeliver them, instead of acking out of order.
        log.error("kafka_write_failed", error=str(exc))
        self.failed.set()

    def run(self, stop: threading.Event) -> None:
        """Consume from MQTT until `stop` is set or a Kafka write fails."""
        m = self.settings.mqtt
        self.client.connect(m.host, m.port, keepalive=30)
        self.client.loop_start()
        try:
            while not stop.is_set() and not self.failed.is_set():
                stop.wait(0.2)
        finally:
            # Flush while MQTT is still connected so the acks of stored readings go out.
            self.producer.flush(30)
            self.client.disconnect()
            self.client.loop_stop()
            self.producer.close(10)
        if self.failed.is_set():
            raise SystemExit("ingest stopped: a Kafka write failed; unacked readings stay with MQTT")
