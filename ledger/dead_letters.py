"""Where the ledger's consumers put a record they cannot act on: its consumer's dead-letter topic.

A record that does not parse, does not verify or names someone not enrolled is sent, with the
reason and where it came from (topic/partition/offset), to `<topic>.<consumer>.dead` (citygrid.topics),
counted, and the consumer moves on: one bad record never stops the records after it. The producer is
flushed before the consumer commits past the record, so a dead letter is never lost either.
"""

from __future__ import annotations

import contextlib
import time

import structlog
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter

from citygrid import kafka_clients
from citygrid.records import DeadLetter
from citygrid.settings import KafkaSettings
from citygrid.topics import dead_letters_topic

log = structlog.get_logger(__name__)

DEAD_LETTERS = Counter("citygrid_ledger_dead_letters_total",
                       "Records a ledger consumer could not act on, sent to its dead-letter topic",
                       ["consumer", "reason"])
# A dead letter keeps at most this much of the refused record, so it stays a readable DeadLetter.
MAX_KEPT_BYTES = 32 * 1024


class DeadLetters:
    """One consumer's dead-letter producer."""

    def __init__(self, kafka: KafkaSettings, source_topic: str, consumer: str) -> None:
        self.topic = dead_letters_topic(source_topic, consumer)
        self.consumer = consumer
        _ensure_topic(kafka, self.topic)
        self._producer = kafka_clients.producer(kafka, acks="all", linger_ms=5)
        self._pending = 0

    def send(self, record: object, reason: str, error: str) -> None:
        """Dead-letter a consumed record (kafka-python's ConsumerRecord) for `reason`."""
        value: bytes = getattr(record, "value", b"") or b""
        source = f"{getattr(record, 'topic', '?')}/{getattr(record, 'partition', '?')}/" \
                 f"{getattr(record, 'offset', '?')}"
        if len(value) > MAX_KEPT_BYTES:
            error = f"{error} (record of {len(value)} bytes, first {MAX_KEPT_BYTES} kept)"
        letter = DeadLetter.of(value[:MAX_KEPT_BYTES], source, reason[:64], error, int(time.time() * 1000))
        self._producer.send(self.topic, key=getattr(record, "key", None), value=letter.encode())
        self._pending += 1
        DEAD_LETTERS.labels(self.consumer, reason).inc()
        log.warning("dead_lettered", consumer=self.consumer, reason=reason, source=source, error=error[:300])

    def flush(self) -> None:
        """Make every dead letter sent so far durable (before the consumer commits past it)."""
        if self._pending:
            self._producer.flush(30)
            self._pending = 0

    def close(self) -> None:
        """Flush and close the producer."""
        self.flush()
        self._producer.close(5)


def _ensure_topic(kafka: KafkaSettings, topic: str) -> None:
    admin = kafka_clients.admin(kafka)
    try:
        if topic not in set(admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance created it meanwhile
                admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
