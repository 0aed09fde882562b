"""Creating the Kafka topics citygrid uses, with their partition counts."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from citygrid.settings import KafkaSettings


def ensure_topics(s: KafkaSettings, names: list[str] | None = None) -> None:
    """Create the readings and dead-letter topics (or `names`) if missing."""
    names = names or [s.readings_topic, s.dead_letter_topic]
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, s.partitions, 1) for n in names if n not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
    finally:
        admin.close()
