"""Kafka clients (kafka-python), built in one place so that every producer, consumer and admin
client of every process connects the same way: TLS with the brokers' certificate checked, and
SASL/SCRAM as the process's own principal.

kafka-python is imported here lazily: only the stream and ledger parts (which install it) call
these; a device never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from citygrid.errors import ConfigError
from citygrid.settings import KafkaSettings

if TYPE_CHECKING:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer


def client_options(k: KafkaSettings) -> dict[str, Any]:
    """The connection and authentication options every kafka-python client gets."""
    options: dict[str, Any] = {"bootstrap_servers": k.bootstrap, "security_protocol": k.security_protocol}
    if k.security_protocol == "SASL_SSL":
        if not (k.username and k.password):
            raise ConfigError("Kafka needs this process's principal: set CITYGRID_KAFKA__USERNAME and "
                              "CITYGRID_KAFKA__PASSWORD (from its Secret)")
        options.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.username,
                       sasl_plain_password=k.password, ssl_check_hostname=True)
        if k.ca_file is not None:
            options["ssl_cafile"] = str(k.ca_file)
    return options


def producer(k: KafkaSettings, **options: Any) -> KafkaProducer:
    """A producer authenticated as this process's principal."""
    from kafka import KafkaProducer

    return KafkaProducer(**client_options(k), **options)


def consumer(k: KafkaSettings, *topics: str, **options: Any) -> KafkaConsumer:
    """A consumer (of `topics`, or assigned later) authenticated as this process's principal. It reads
    only committed records: the readings topic is written in Kafka transactions (the ingest's dedupe
    stage), and an aborted one's records stay in the log, where a read_uncommitted reader sees them."""
    from kafka import KafkaConsumer

    return KafkaConsumer(*topics, **client_options(k), **{"isolation_level": "read_committed", **options})


def admin(k: KafkaSettings, **options: Any) -> KafkaAdminClient:
    """An admin client authenticated as this process's principal."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**client_options(k), **options)
