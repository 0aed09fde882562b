"""The ledger's Kafka consumers: manual commits, from the earliest record a group has not committed.

The anchorer and the settler each commit an offset only once what the record led to is durable (in
the anchor store, or settled on chain), so a crash re-reads records rather than losing them; their
stores recognise a re-read record, which makes reading it twice harmless.
"""

from __future__ import annotations

from kafka import KafkaConsumer

from citygrid import kafka_clients
from citygrid.settings import KafkaSettings


def ledger_consumer(kafka: KafkaSettings, topic: str, group: str, **options: int) -> KafkaConsumer:
    """A consumer of `topic` in `group` that commits only when told to (`options`: kafka-python's)."""
    return kafka_clients.consumer(kafka, topic, group_id=group,
                         enable_auto_commit=False, auto_offset_reset="earliest", **options)
