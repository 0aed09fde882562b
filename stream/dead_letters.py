"""The stream workers' dead letters: a record an agent cannot process goes to its consumer's
dead-letter topic (`<topic>.<consumer>.dead`, citygrid.topics) with the reason and where it came
from (topic/partition/offset), is counted, and the agent moves on to the next record."""

from __future__ import annotations

import time

import faust
import structlog
from prometheus_client import Counter

from citygrid.records import DeadLetter

# The stream workers' Kafka principal: their dead-letter topics are `<topic>.worker.dead`, one per
# topic they consume (citygrid.topics.dead_letters_topic); the counter's `consumer` names the agent.
WORKER = "worker"

log = structlog.get_logger(__name__)

DEAD_LETTERS = Counter("citygrid_stream_dead_letters_total",
                       "Records a stream agent could not process, sent to its dead-letter topic",
                       ["consumer", "reason"])
# A dead letter keeps at most this much of the refused record, so it stays a readable DeadLetter.
MAX_KEPT_BYTES = 32 * 1024


def source_of(event: faust.EventT) -> str:
    """Where an event's record came from: topic/partition/offset."""
    m = event.message
    return record_source(m.topic, m.partition, m.offset)


def record_source(topic: str, partition: int, offset: int) -> str:
    """Where a record came from, as every dead letter names it: topic/partition/offset."""
    return f"{topic}/{partition}/{offset}"


def letter(value: bytes, source: str, reason: str, error: str) -> bytes:
    """The DeadLetter record of a refused value (its first MAX_KEPT_BYTES kept)."""
    if len(value) > MAX_KEPT_BYTES:
        error = f"{error} (record of {len(value)} bytes, first {MAX_KEPT_BYTES} kept)"
    return DeadLetter.of(value[:MAX_KEPT_BYTES], source, reason[:64], error,
                         int(time.time() * 1000)).encode()


async def send_dead(topic: faust.TopicT, consumer: str, event: faust.EventT, reason: str,
                    error: str) -> None:
    """Dead-letter one event's record and count it."""
    await send_dead_record(topic, consumer, event.key, event.value, source_of(event), reason, error)


async def send_dead_record(topic: faust.TopicT, consumer: str, key: object, value: object, source: str,
                           reason: str, error: str) -> None:
    """Dead-letter one record (from `source`, topic/partition/offset) and count it."""
    await topic.send(key=key if isinstance(key, bytes) else None,
                     value=letter(value if isinstance(value, bytes) else b"", source, reason, error))
    DEAD_LETTERS.labels(consumer, reason).inc()
    log.warning("dead_lettered", consumer=consumer, reason=reason, source=source, error=error[:300])
