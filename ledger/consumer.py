"""The ledger's Kafka consumers: manual commits, from the earliest record a group has not committed.

The anchorer and the settler each commit an offset only once what the record led to is durable (in
the anchor store, or settled on chain), so a crash re-reads records rather than losing them; their
stores recognise a re-read record, which makes reading it twice harmless.
"""

from __future__ import annotations

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from citygrid import kafka_clients
from citygrid.ledger.leadership import ActiveStandbyAssignor
from citygrid.settings import KafkaSettings

TAKEOVER_MS = 10_000  # the group's session timeout: how long a dead active holds its partitions


def ledger_consumer(kafka: KafkaSettings, topic: str | list[str], group: str,
                    listener: ConsumerRebalanceListener | None = None, **options: int) -> KafkaConsumer:
    """A consumer of `topic` (or topics) in `group` that commits only when told to (`options`:
    kafka-python's). One member of the group is active and holds every partition; any other waits as
    its standby (citygrid.ledger.leadership); `listener` hears when this member takes over or hands over.

    A standby takes over about `TAKEOVER_MS` after the active died: its session times out then
    (kafka-python's default is 45 s). Heartbeats go from kafka-python's IO thread, so an active busy
    waiting on the chain stays in the group.
    """
    topics = [topic] if isinstance(topic, str) else topic
    options = {"session_timeout_ms": TAKEOVER_MS, "heartbeat_interval_ms": TAKEOVER_MS // 4, **options}
    consumer = kafka_clients.consumer(kafka, group_id=group, enable_auto_commit=False,
                                      auto_offset_reset="earliest",
                                      partition_assignment_strategy=[ActiveStandbyAssignor()], **options)
    consumer.subscribe(topics, listener=listener)
    return consumer
