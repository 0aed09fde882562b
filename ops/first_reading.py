"""A deploy is proven by the device's first reading: the new release's signed reading, in Kafka.

An installed release whose agent starts is not yet a working device: its broker identity, network,
meter and model all have to work too, and only a reading that went through the ingest (signature,
enrolment, schema, replay window) shows that they do. So after switching a device to a release the
deploy watches the readings topic, from the offsets it ends at just before the agent (re)starts, for
a reading of that device measured after the start (by the device's own clock) and, when the release
ships a model, scored by that model's version: a reading the previous release left in the outbox, or
one scored by the fallback model after the new one failed, does not count.

Each watch is its own consumer without a group (nothing committed), so devices deployed in parallel
never share one; it reads as the operator's Kafka principal (CITYGRID_KAFKA__*).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from citygrid import kafka_clients
from citygrid.reading import Reading, reading_or_none
from citygrid.settings import KafkaSettings


@dataclass(frozen=True)
class FirstReadingGate:
    """How a deploy waits for a device's first reading: where, and for how long."""

    kafka: KafkaSettings
    timeout_s: float = 120.0

    def open(self, device_id: str) -> ReadingWatch:
        """Start watching for `device_id` from the topic's current end (call before restarting it)."""
        return ReadingWatch(self.kafka, device_id, self.timeout_s)


class ReadingWatch:
    """The readings of one device appended to the readings topic since the watch opened."""

    def __init__(self, k: KafkaSettings, device_id: str, timeout_s: float) -> None:
        from kafka import TopicPartition  # kafka-python: only where a deploy waits for readings

        self.device_id, self.timeout_s = device_id, timeout_s
        self.consumer = kafka_clients.consumer(k, enable_auto_commit=False, consumer_timeout_ms=1000)
        parts = self.consumer.partitions_for_topic(k.readings_topic) or set()
        tps = [TopicPartition(k.readings_topic, p) for p in sorted(parts)]
        if not tps:
            self.consumer.close()
            raise ValueError(f"Kafka has no topic {k.readings_topic}; is the ingest running?")
        self.consumer.assign(tps)
        for tp, end in self.consumer.end_offsets(tps).items():
            self.consumer.seek(tp, end)

    def first(self, since_ms: int, model: str | None) -> tuple[Reading | None, float]:
        """The first reading of the device measured at or after `since_ms` (device clock) and, if
        `model` ("name version") is given, scored by it; None when none came within the timeout.
        Also returns how long the wait took."""
        t0 = time.monotonic()
        key = self.device_id.encode()
        while time.monotonic() - t0 < self.timeout_s:
            for batch in self.consumer.poll(timeout_ms=500).values():
                for record in batch:
                    r = reading_or_none(record.value) if record.key == key else None
                    if r is not None and r.ts_ms >= since_ms and _scored_by(r, model):
                        return r, time.monotonic() - t0
        return None, time.monotonic() - t0

    def close(self) -> None:
        """Leave the topic (no group: nothing to commit)."""
        self.consumer.close()


def _scored_by(r: Reading, model: str | None) -> bool:
    return model is None or (r.model is not None and f"{r.model.name} {r.model.version}" == model)
