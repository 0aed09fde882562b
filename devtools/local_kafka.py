"""The local Kafka broker (KRaft, one node) with the security a deployment has: TLS on every
listener, SASL/SCRAM principals, one per service, and ACLs that let each service touch only its
own topics and groups.

Listeners: clients on SASL_SSL (SCRAM-SHA-512), the KRaft controller on SSL with client
certificates (the broker's own certificate is its principal, a super user). The principals and
their random passwords are made once, at storage format, and kept in `principals.json` (0600)
beside the server's data; `as_principal` gives a process the settings of one of them.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import uuid
from pathlib import Path

from citygrid.devtools.pki import LocalPki
from citygrid.devtools.server import Server, ServerError
from citygrid.settings import CitygridSettings
from citygrid.storage import atomic_write

# The services that talk to Kafka, each its own principal; admin creates topics and ACLs.
PRINCIPALS = ("admin", "ingest", "worker", "anchorer", "settler", "advisor", "participant")
BROKER_CN = "citygrid-kafka"
LOG4J = (
    "log4j.rootLogger=WARN, stdout\n"
    "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
    "log4j.logger.kafka.server.KafkaServer=INFO\nlog4j.logger.kafka.server.KafkaRaftServer=INFO\n"
)


def kafka_dir(s: CitygridSettings) -> Path:
    """Where the local broker keeps its configuration, data and principals."""
    return s.paths.servers_dir / "kafka"


def principals(s: CitygridSettings) -> dict[str, str]:
    """Principal name → password of the local broker (made once, 0600)."""
    path = kafka_dir(s) / "principals.json"
    if not path.exists():
        made = {name: secrets.token_urlsafe(24) for name in PRINCIPALS}
        atomic_write(path, json.dumps(made), mode=0o600)
    return json.loads(path.read_text())


def local_pki(s: CitygridSettings) -> LocalPki:
    """The local platform's CA (the one the MQTT broker's certificate comes from too)."""
    return LocalPki(s.paths.data_dir / "pki").ensure()


def as_principal(s: CitygridSettings, name: str) -> CitygridSettings:
    """These settings, connecting as principal `name` to the local Kafka that these same settings
    start (its principals and CA live under their paths)."""
    k = s.kafka.model_copy(update={
        "security_protocol": "SASL_SSL", "username": name, "password": principals(s)[name],
        "ca_file": local_pki(s).ca_cert})
    return s.model_copy(update={"kafka": k})


def kafka_server(s: CitygridSettings, secure: bool = True) -> Server:
    """The local broker as a citygrid Server. `secure=False` gives a plaintext broker with no
    authentication: only benchmarks start one, as the baseline that security is measured against."""
    port = int(s.kafka.bootstrap.rsplit(":", 1)[1])
    lib = s.paths.cache_dir / "kafka" / "lib"

    def prepare(d: Path) -> None:
        if not lib.exists():
            raise ServerError("Kafka jars missing; run scripts/setup.sh")
        (_write_config if secure else _write_plain_config)(s, d, port)
        if not (d / "data" / "meta.properties").exists():
            _format(s, d, lib)

    def ready() -> bool:
        return broker_answers(as_principal(s, "admin") if secure else s)

    def command(d: Path) -> list[str]:
        return [*_java(lib, d), "kafka.Kafka", str(d / "server.properties")]

    def grant() -> None:
        from citygrid.ops.kafka_access import apply

        apply(as_principal(s, "admin"))

    return Server("kafka", port, kafka_dir(s), command, prepare, ready, 120,
                  after_start=grant if secure else None)


def broker_answers(admin_settings: CitygridSettings) -> bool:
    """True once the broker answers an authenticated metadata request."""
    from kafka.errors import KafkaError

    from citygrid.kafka_clients import admin

    try:
        client = admin(admin_settings.kafka, request_timeout_ms=3000)
    except KafkaError:
        return False
    try:
        client.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        client.close()


def _write_config(s: CitygridSettings, d: Path, port: int) -> None:
    pki = local_pki(s)
    broker_pem = d / "broker.pem"
    if not broker_pem.exists():
        # The broker's own certificate: server side for clients, client side towards its controller.
        pki.issue(d / "broker.crt", d / "broker.key", BROKER_CN, server=True, client=True)
        pem = (d / "broker.key").read_bytes() + (d / "broker.crt").read_bytes()
        atomic_write(broker_pem, pem, mode=0o600)
    controller = port + 1
    admin_password = principals(s)["admin"]
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    (d / "server.properties").write_text("\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=SASL_SSL",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram} username="admin" '
        f'password="{admin_password}";',
        "ssl.keystore.type=PEM", f"ssl.keystore.location={broker_pem}",
        "ssl.truststore.type=PEM", f"ssl.truststore.location={pki.ca_cert}",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.endpoint.identification.algorithm=https",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:admin;User:CN={BROKER_CN}", "allow.everyone.if.no.acl.found=false",
        f"log.dirs={d / 'data'}", f"num.partitions={s.kafka.partitions}",
        "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false", "offsets.topic.num.partitions=4", "",
    ]))
    (d / "server.properties").chmod(0o600)
    (d / "log4j.properties").write_text(LOG4J)


def _write_plain_config(s: CitygridSettings, d: Path, port: int) -> None:
    (d / "server.properties").write_text("\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{port + 1}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}", "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={d / 'data'}", f"num.partitions={s.kafka.partitions}",
        "offsets.topic.replication.factor=1", "group.initial.rebalance.delay.ms=0", "",
    ]))
    (d / "log4j.properties").write_text(LOG4J)


def _format(s: CitygridSettings, d: Path, lib: Path) -> None:
    """Format the KRaft storage with every principal's SCRAM credential."""
    cluster = "-"
    while cluster.startswith("-"):  # StorageTool would read a leading '-' as an option
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram = [arg for name, password in principals(s).items()
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
    done = subprocess.run([*_java(lib, d), "kafka.tools.StorageTool", "format", "-t", cluster,
                           "-c", str(d / "server.properties"), *scram],
                          capture_output=True, cwd=d, text=True)
    if done.returncode != 0:
        # The command line holds passwords: report the tool's output only.
        raise ServerError(f"formatting Kafka's storage failed: {done.stdout[-500:]} {done.stderr[-1500:]}")


def _java(lib: Path, d: Path) -> list[str]:
    return [
        "java", "-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{d / 'log4j.properties'}", "-cp", f"{lib}/*",
    ]
