"""MQTT → Kafka ingest: verify each reading, write it keyed by device, dead-letter the rest.

A reading's MQTT acknowledgement is sent only after Kafka has acknowledged the
record (manual acks on a persistent session), so a crash or a Kafka outage at
any moment leaves unacknowledged readings with the broker, which delivers
them again when the ingest reconnects. The producer is idempotent, so its own
retries never duplicate a record.

Hostile input never stops it: a message larger than any reading
(stream.ingest_max_payload_bytes) is dead-lettered with only its first bytes
kept, plus its length and SHA-256; any unexpected error while handling one
message is logged and that message dead-lettered (`ingest_error`), so it is
neither lost nor redelivered forever; dead letters are rate-limited per source
topic (token bucket), beyond which rejections are counted and acknowledged but
not written, so a flood cannot fill Kafka. Only a failed Kafka write stops the
ingest, by design: what it has not stored stays unacknowledged with the broker.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import structlog
from kafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from citygrid import kafka_clients
from citygrid.errors import PayloadTooLarge, ReadingRejected, UnknownDevice
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
DEAD_LETTERS_DROPPED = Counter("citygrid_ingest_dead_letters_dropped_total",
                               "Rejected messages acked but not written: their source's rate was spent",
                               ["reason"])
# What an oversized message's dead letter keeps of it.
KEPT_BYTES = 1024


class IngestFault(ReadingRejected, reason="ingest_error"):
    """The ingest itself failed on this message (a bug); kept in the dead letters for replay once fixed."""


class DeadLetterLimiter:
    """Token buckets: one per source (MQTT topic), `rate_per_s` dead letters a second with `burst` at
    once, and one over all sources (`sources_at_once` times that), so inventing topics gets a flood
    no further. At most `max_sources` buckets are kept (least recently used dropped)."""

    def __init__(self, rate_per_s: float, burst: int, sources_at_once: int = 20,
                 max_sources: int = 10_000) -> None:
        self.rate, self.burst, self.max_sources = rate_per_s, float(burst), max_sources
        self.total_rate, self.total_burst = rate_per_s * sources_at_once, float(burst * sources_at_once)
        self._total = (self.total_burst, None)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, source: str, now: float | None = None) -> bool:
        """Take one token from `source`'s bucket and the shared one; False if either is empty."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            total, total_last = self._total
            total = min(self.total_burst, total + (now - (total_last or now)) * self.total_rate)
            allowed = tokens >= 1.0 and total >= 1.0
            spent = 1.0 if allowed else 0.0
            self._buckets[source] = (tokens - spent, now)
            self._total = (total - spent, now)
            if len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
            return allowed


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
        self._registry_next_check = 0.0
        self.validator = IngestValidator(self._load_registry())
        restored = restore_window(self.validator.window, settings)
        log.info("replay_window_restored", records=restored)
        self.producer = kafka_clients.producer(
            settings.kafka, acks="all", enable_idempotence=True,
            linger_ms=5, batch_size=256 * 1024, max_in_flight_requests_per_connection=5,
            # Within delivery_timeout_ms (2 min) a Kafka outage is ridden out by retrying; reconnect
            # quickly once the broker is back rather than after kafka-python's 30 s backoff cap.
            reconnect_backoff_max_ms=1000,
        )
        self.client = mqtt_client(settings.mqtt, settings.mqtt.ingest_client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.failed = threading.Event()
        self.dead_letters = DeadLetterLimiter(settings.stream.dead_letter_rate_per_s,
                                              settings.stream.dead_letter_burst)

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
        self.receive(msg.payload, msg.topic, msg.mid, msg.qos)

    def receive(self, payload: bytes, topic: str, mid: int, qos: int) -> None:
        """Handle one MQTT message whatever it holds: never raises into the MQTT loop."""
        now_ms = int(time.time() * 1000)
        try:
            limit = self.settings.stream.ingest_max_payload_bytes
            if len(payload) > limit:
                self._dead_letter(payload, topic, PayloadTooLarge(
                    f"message of {len(payload)} bytes exceeds the {limit} any reading fits in; first "
                    f"{KEPT_BYTES} bytes kept"), now_ms, mid, qos)
                return
            self.handle(payload, topic, mid, qos)
        except Exception as exc:  # a bug on one message must not stop the ingest, nor lose the message
            log.exception("ingest_message_failed", topic=topic[:200])
            try:
                fault = IngestFault(f"the ingest failed on this message ({type(exc).__name__})")
                self._dead_letter(payload, topic, fault, now_ms, mid, qos)
            except Exception:
                log.exception("ingest_dead_letter_failed", topic=topic[:200])

    def _dead_letter(self, payload: bytes, topic: str, exc: ReadingRejected, now_ms: int, mid: int,
                     qos: int) -> None:
        """Count a rejection; write its dead letter (rate-limited per source), then ack the message."""
        REJECTED.labels(exc.reason).inc()
        if not self.dead_letters.allow(topic):
            DEAD_LETTERS_DROPPED.labels(exc.reason).inc()
            self.client.ack(mid, qos)
            return
        log.info("reading_rejected", reason=exc.reason, error=str(exc)[:300], topic=topic[:200])
        dead = DeadLetter.of(payload, topic, exc.reason, str(exc), now_ms, keep=KEPT_BYTES)
        self._send(self.settings.kafka.dead_letter_topic, exc.reason.encode(), dead.encode(), [],
                   stored=lambda: self.client.ack(mid, qos), lost=lambda: None)

    def handle(self, payload: bytes, topic: str, mid: int, qos: int) -> None:
        """Validate one message and hand it to Kafka; the MQTT ack follows Kafka's."""
        t0 = time.perf_counter()
        now_ms = int(time.time() * 1000)
        parsed = parse_readings_topic(self.settings.mqtt.readings_topic, topic)
        district = parsed[0] if parsed else ""
        try:
            reading = self._check(payload, now_ms, district)
        except ReadingRejected as exc:
            self._dead_letter(payload, topic, exc, now_ms, mid, qos)
            return

        def stored() -> None:
            self.client.ack(mid, qos)
            ACCEPTED.inc()
            LATENCY.observe(time.perf_counter() - t0)

        # The district (feeder or intersection), checked against the enrolment: keep it for the workers.
        self._send(self.settings.kafka.readings_topic, reading.device.encode(), payload,
                   [(DISTRICT_HEADER, district.encode())], stored=stored,
                   lost=lambda: self.validator.window.forget(reading.device, reading.seq))

    def _check(self, payload: bytes, now_ms: int, district: str) -> Reading:
        # Enrolments and revocations apply within a second, without a restart.
        if time.monotonic() >= self._registry_next_check:
            self._registry_next_check = time.monotonic() + 1.0
            if self._registry_changed():
                self.validator.registry = self._load_registry()
        try:
            return self.validator.check(payload, now_ms, district)
        except UnknownDevice:
            # A device registered since we loaded the registry: reload once, then decide.
            if not self._registry_changed():
                raise
            self.validator.registry = self._load_registry()
            return self.validator.check(payload, now_ms, district)

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
