"""Kafka topics: creating them, and reading them back whole (for reports, tools and tests)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError

from citygrid import kafka_clients
from citygrid.settings import KafkaSettings

Offsets = dict[TopicPartition, int]


def ensure_topics(s: KafkaSettings, names: list[str] | None = None,
                  configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create the readings and dead-letter topics (or `names`) if missing, each with its `configs`."""
    names = names or [s.readings_topic, s.dead_letter_topic]
    configs = configs or {}
    client = kafka_clients.admin(s)
    try:
        existing = set(client.list_topics())
        new = [NewTopic(n, s.partitions, 1, topic_configs=configs.get(n, {}))
               for n in names if n not in existing]
        # Another process may create one between list and create.
        with contextlib.suppress(TopicAlreadyExistsError):
            if new:
                client.create_topics(new)
    finally:
        client.close()


def _reader(s: KafkaSettings, **options: object) -> KafkaConsumer:
    # No group and no commits: these reads are snapshots, never a consumer's progress.
    return kafka_clients.consumer(s, enable_auto_commit=False, **options)


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]


def topic_end(s: KafkaSettings, topic: str) -> int:
    """Records a consumer reads from a topic now. Not the sum of its end offsets: each Kafka
    transaction (the readings topic is written in them) leaves a marker that takes an offset, and an
    aborted one leaves records no consumer reads. So the topic is read: for tools and tests."""
    return len(read_topic(s, topic))


def read_topic(s: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Every record currently in a topic, read without a consumer group."""
    return _read_range(s, topic, lambda starts, _ends: starts, timeout_s, f"{topic} to its end")


def read_tail(s: KafkaSettings, topic: str, per_partition: int, timeout_s: float = 60.0
              ) -> list[ConsumerRecord]:
    """The last `per_partition` records of each partition of a topic (all, if fewer)."""
    def tail(starts: Offsets, ends: Offsets) -> Offsets:
        return {tp: max(starts[tp], ends[tp] - per_partition) for tp in ends}

    return _read_range(s, topic, tail, timeout_s, f"the tail of {topic}",
                       max_partition_fetch_bytes=8 * 1024 * 1024)


def read_partition(s: KafkaSettings, topic: str, partition: int, start: int, end: int,
                   timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """The records of one partition with start <= offset < end, read without a consumer group."""
    consumer = _reader(s)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        return _read(consumer, {tp: start}, {tp: end}, timeout_s, f"{topic}/{partition} [{start}, {end})")
    finally:
        consumer.close()


def _read_range(s: KafkaSettings, topic: str, first: Callable[[Offsets, Offsets], Offsets],
                timeout_s: float, what: str, **options: object) -> list[ConsumerRecord]:
    """The records of every partition from `first(starts, ends)` up to the end offsets seen now."""
    consumer = _reader(s, **options)
    try:
        tps = _partitions(consumer, topic)
        if not tps:
            return []
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        return _read(consumer, first(consumer.beginning_offsets(tps), ends), ends, timeout_s, what)
    finally:
        consumer.close()


def _read(consumer: KafkaConsumer, starts: Offsets, ends: Offsets, timeout_s: float,
          what: str) -> list[ConsumerRecord]:
    """Poll the assigned partitions from `starts` until each reaches its offset in `ends`."""
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(tp) < ends[tp] for tp in ends):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {what} in {timeout_s}s")
        for batch in consumer.poll(timeout_ms=500).values():
            # Records written after the snapshot of end offsets belong to the next read.
            records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
    return records
