"""MQTT → Kafka ingest, as N instances: verify each reading, write it keyed by device, dead-letter the rest.

The instances share one MQTT subscription (`$share/<ingest name>/…`), each under its own broker identity
and client id with a persistent session, so the broker hands each reading to one of them and keeps an
instance's share queued while it is away (Mosquitto's round robin does not skip an offline session: an
instance that is down must come back, as a StatefulSet brings it back under the same identity).

An instance does not decide whether a reading is new: its instances' views are partial. It writes what it
verified (signature, schema, enrolment, bounds) to `{readings}.verified`, keyed by device, and sends a
reading's MQTT acknowledgement only after Kafka has acknowledged that record (manual acks on a
persistent session), so a crash or a Kafka outage at any moment leaves unacknowledged readings with the
broker, which delivers them again when the instance reconnects. The dedupe stage, which every instance
also runs (citygrid.stream.dedupe), lets each (device, seq) into `readings` once, in Kafka transactions.

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
from citygrid.reading import Reading
from citygrid.records import DeadLetter
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceRegistry
from citygrid.stream.dedupe import Dedupe, ensure_ingest_topics, seq_header
from citygrid.stream.validation import IngestFault, IngestValidator
from citygrid.topics import (
    DISTRICT_HEADER,
    parse_readings_topic,
    shared_readings_filter,
    verified_readings_topic,
)

log = structlog.get_logger(__name__)

ACCEPTED = Counter("citygrid_ingest_accepted_total", "Readings verified and written to Kafka (before dedupe)")
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


def subscription(settings: CitygridSettings) -> str:
    """The shared readings subscription every instance of this ingest joins."""
    return shared_readings_filter(settings.mqtt.readings_topic, settings.mqtt.ingest_client_id)


def prepare_session(settings: CitygridSettings) -> None:
    """Create this ingest instance's persistent MQTT session in the shared subscription, then leave.

    From then on the broker queues this instance's share of the readings even while it is not
    running, so devices may start publishing before the ingest first starts.
    """
    client = mqtt_client(settings.mqtt, settings.mqtt.ingest_client_id, manual_ack=False)
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(subscription(settings), qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise ConnectionError("the broker did not confirm the ingest's subscription")
    finally:
        client.disconnect()
        client.loop_stop()


def retire_session(settings: CitygridSettings) -> None:
    """Discard this instance's persistent session, its place in the shared subscription with it (connect
    with a clean session, then leave): what an instance removed for good needs, since the broker keeps
    handing an offline session its share. Whatever the session still queues is dropped with it, so retire
    an instance only after it stopped with its queue drained."""
    client = mqtt_client(settings.mqtt, settings.mqtt.ingest_client_id, clean_session=True)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: None if rc.is_failure else connected.set()
    client.connect(settings.mqtt.host, settings.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise ConnectionError("the broker did not accept the ingest instance's identity")
    finally:
        client.disconnect()
        client.loop_stop()


class Ingest:
    """One ingest instance: the MQTT → verified-readings front and a member of the dedupe stage."""

    def __init__(self, settings: CitygridSettings) -> None:
        self.settings = settings
        self.registry_path = Path(settings.paths.device_registry)
        self._registry_mtime = 0.0
        self._registry_next_check = 0.0
        self.validator = IngestValidator(self._load_registry())
        ensure_ingest_topics(settings)
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
        self.dedupe = Dedupe(settings, self.admit_dead_letter)

    def _load_registry(self) -> DeviceRegistry:
        self._registry_mtime = self.registry_path.stat().st_mtime if self.registry_path.exists() else 0
        return DeviceRegistry.load(self.registry_path)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt_connect_refused", reason=str(reason_code))
            return
        client.subscribe(subscription(self.settings), qos=1)
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
        if not self.admit_dead_letter(exc.reason, topic):
            self.client.ack(mid, qos)
            return
        log.info("reading_rejected", reason=exc.reason, error=str(exc)[:300], topic=topic[:200])
        dead = DeadLetter.of(payload, topic, exc.reason, str(exc), now_ms, keep=KEPT_BYTES)
        self._send(self.settings.kafka.dead_letter_topic, exc.reason.encode(), dead.encode(), [],
                   stored=lambda: self.client.ack(mid, qos), lost=lambda: None)

    def admit_dead_letter(self, reason: str, source: str) -> bool:
        """Count a rejection (here or in the dedupe stage); whether its source may have a dead letter now."""
        REJECTED.labels(reason).inc()
        if self.dead_letters.allow(source):
            return True
        DEAD_LETTERS_DROPPED.labels(reason).inc()
        return False

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

        self.store(reading, payload, district, stored)

    def store(self, reading: Reading, payload: bytes, district: str, stored: Callable[[], None]) -> None:
        """Hand a verified reading to the dedupe stage; `stored` (the MQTT ack) once Kafka holds it."""
        # The district (feeder or intersection), checked against the enrolment: kept for the workers.
        self._send(verified_readings_topic(self.settings.kafka), reading.device.encode(), payload,
                   [(DISTRICT_HEADER, district.encode()), seq_header(reading.seq)], stored=stored,
                   lost=lambda: None)

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
        """Consume from MQTT and decide this member's share of the verified readings until `stop` is set
        or a Kafka write fails."""
        halt = threading.Event()  # the dedupe member's own stop: after the front's last acks went out
        dedupe = threading.Thread(target=self.dedupe.run, args=(halt, self.failed), name="dedupe",
                                  daemon=True)
        dedupe.start()
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
            halt.set()
            dedupe.join(60)
        if self.failed.is_set():
            raise SystemExit("ingest stopped: a Kafka write failed; unacked readings stay with MQTT")
