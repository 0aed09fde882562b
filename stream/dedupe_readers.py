"""The Faust workers read the readings topic as committed records only.

The dedupe stage writes `readings` in Kafka transactions (citygrid.stream.dedupe); an aborted one (a
dedupe member killed mid-poll) leaves its records in the log, where a read_uncommitted reader sees
them, and the next owner writes them again, committed: duplicates. kafka-python clients read committed
(citygrid.kafka_clients); Faust 0.15 sets its consumer's isolation level only from
processing_guarantee="exactly_once", which would make every worker's own writes transactional too. So
the app gets a transport whose worker consumer reads committed, and nothing else changes.
"""

from __future__ import annotations

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport


class _CommittedConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> object:  # an aiokafka consumer
        consumer = super()._create_worker_consumer(transport)
        # aiokafka 0.14 hands this to its fetcher at start(), which comes after.
        consumer._isolation_level = "read_committed"
        return consumer


class _CommittedConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class CommittedTransport(Transport):
    """Faust's aiokafka transport, its worker consumer reading committed records only."""

    Consumer = _CommittedConsumer


def read_committed(app: faust.App) -> faust.App:
    """Give `app` the committed-reads transport; call before it declares any topic."""
    app.transport = CommittedTransport(app.conf.broker_consumer, app)
    return app
