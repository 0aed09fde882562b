"""Kafka on the real local broker: every client authenticates (SCRAM over TLS) as its service's
principal, and the ACLs confine each service to its own topics and groups."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError
from support import as_kafka_service

from citygrid.kafka_clients import consumer, producer
from citygrid.settings import CitygridSettings
from citygrid.stream.kafka_topics import ensure_topics

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]


@pytest.fixture
def topics(live: CitygridSettings) -> CitygridSettings:
    k = live.kafka
    ensure_topics(k, [k.readings_topic, k.trades_topic])
    return live


def _as(s: CitygridSettings, principal: str) -> CitygridSettings:
    return as_kafka_service(s, principal)


def test_a_client_without_credentials_or_with_wrong_ones_is_refused(topics: CitygridSettings) -> None:
    plain = topics.kafka.model_copy(update={"security_protocol": "PLAINTEXT"})
    with pytest.raises(KafkaTimeoutError):
        producer(plain, request_timeout_ms=5000)
    wrong = _as(topics, "ingest").kafka.model_copy(update={"password": "not-the-password"})
    with pytest.raises(KafkaTimeoutError):
        producer(wrong, request_timeout_ms=5000)


def test_only_the_ingest_writes_readings_and_only_the_workers_write_trades(topics: CitygridSettings) -> None:
    k = topics.kafka
    ingest = producer(_as(topics, "ingest").kafka, acks="all", max_block_ms=10_000)
    try:
        assert ingest.send(k.readings_topic, b"r").get(10).offset >= 0
        with pytest.raises(TopicAuthorizationFailedError):
            ingest.send(k.trades_topic, b"forged trade").get(10)
    finally:
        ingest.close()
    for intruder in ("settler", "participant", "anchorer"):
        p = producer(_as(topics, intruder).kafka, acks="all", max_block_ms=10_000)
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                p.send(k.readings_topic, b"forged reading").get(10)
        finally:
            p.close()
    worker = producer(_as(topics, "worker").kafka, acks="all", max_block_ms=10_000)
    try:
        assert worker.send(k.trades_topic, b"t").get(10).offset >= 0
    finally:
        worker.close()


def test_each_consumer_reads_only_what_it_needs(topics: CitygridSettings) -> None:
    k = topics.kafka
    for principal, allowed, refused in (("anchorer", k.readings_topic, k.trades_topic),
                                        ("settler", k.trades_topic, k.readings_topic),
                                        ("advisor", k.readings_topic, k.trades_topic)):
        c = consumer(_as(topics, principal).kafka, enable_auto_commit=False)
        try:
            # The broker shows a principal only the topics it may describe: the others do not exist for it.
            assert c.partitions_for_topic(allowed) == set(range(k.partitions)), principal
            assert not c.partitions_for_topic(refused), principal
        finally:
            c.close()
