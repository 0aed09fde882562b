"""The closed loop's stream side: a small advisor process, Kafka readings in, MQTT signal advice out.

Chosen over a Faust agent because its output is MQTT, not Kafka: advice must
reach the intersections at QoS 1 through the broker they already listen to,
and a paho client's acknowledgement waits do not belong on Faust's event
loop. The advisor is a Kafka consumer group of its own, so it scales with the
readings topic's partitions exactly as the Faust workers do, and it can be
restarted without rebalancing the learning app. Its forecasters live in
memory: after a restart they relearn within a few intervals, during which the
intersections run advice from untrained (persistence-like) forecasts.

Every advice is a signed command (citygrid.commands): signed with the command
authority's key (TrafficSettings.command_key_file; the advisor refuses to start
without it), naming the intersection, expiring `advice_ttl_s` after issue, and
numbered so that a replay is refused by the light.
"""

from __future__ import annotations

import threading
import time

import structlog
from prometheus_client import Counter

from citygrid import kafka_clients
from citygrid.commands import CommandIssuer
from citygrid.errors import ConfigError, ReadingRejected
from citygrid.mqtt import Publisher
from citygrid.reading import SignedReading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.stream.learning import domain_of
from citygrid.stream.traffic.advice import Advisor
from citygrid.topics import advisor_group, commands_topic

log = structlog.get_logger(__name__)
ADVICE_SENT = Counter("citygrid_traffic_advice_sent_total", "Signal advice published to intersections")


class TrafficAdvisor:
    """Consumes traffic readings (already verified by the ingest) and publishes each light's advice."""

    def __init__(self, s: CitygridSettings) -> None:
        if s.traffic.command_key_file is None:
            raise ConfigError("the advisor signs every advice: set CITYGRID_TRAFFIC__COMMAND_KEY_FILE to the "
                              "command authority's key file (its public key is the devices' "
                              "CITYGRID_EDGE__COMMAND_PUBLIC_KEY)")
        self.issuer = CommandIssuer(DeviceKey.load(s.traffic.command_key_file))
        self.settings = s
        self.advisor = Advisor(s.traffic, s.stream)
        self.publisher = Publisher(s.mqtt, client_id=f"{advisor_group(s.kafka)}-{int(time.time() * 1000)}")
        self.sent = 0

    def handle(self, envelope: bytes) -> bool:
        """Advise on one readings-topic record; True if advice was published."""
        try:
            reading = SignedReading.decode(envelope).reading()
        except ReadingRejected:
            return False  # the ingest wrote it, so this is another writer's record; not ours to judge
        if domain_of(reading.kind, self.settings.stream) != "traffic":
            return False
        advice = self.advisor.advise(reading)
        if advice is None:
            return False
        topic = commands_topic(self.settings.mqtt.commands_topic, self.settings.traffic.district,
                               reading.device)
        self.publisher.publish_async(topic, self.issuer.advice(advice, self.settings.traffic.advice_ttl_s))
        ADVICE_SENT.inc()
        self.sent += 1
        log.debug("traffic_advice_sent", device=reading.device, cycle_s=advice.cycle_s,
                  greens_s=advice.greens_s)
        return True

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set."""
        s = self.settings
        self.publisher.connect()
        consumer = kafka_clients.consumer(s.kafka, s.kafka.readings_topic, group_id=advisor_group(s.kafka),
                                          auto_offset_reset="earliest", enable_auto_commit=True)
        log.info("traffic_advisor_started", topic=s.kafka.readings_topic, group=advisor_group(s.kafka))
        try:
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for rec in records:
                        self.handle(rec.value)
        finally:
            consumer.close()
            self.publisher.close()
