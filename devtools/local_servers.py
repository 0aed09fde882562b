"""The real servers of a local platform: Mosquitto, Kafka, the dev chain (and Prometheus).

The demo, the test fixtures and `citygrid servers` share this one module so
that what the tests run against is exactly what a user starts. Each server's
configuration, data, log and pid file live under `paths.servers_dir/<name>`.
"""

from __future__ import annotations

import base64
import getpass
import json
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from citygrid.devtools.prometheus import server as prometheus_server
from citygrid.devtools.server import Server, ServerError, port_open
from citygrid.settings import CitygridSettings

# Dev accounts funded at genesis: //Alice signs anchors; the others are prosumers.
DEV_ACCOUNTS = {
    "//Alice": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    "//Bob": "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    "//Charlie": "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y",
    "//Dave": "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy",
    "//Eve": "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw",
    "//Ferdie": "5CiPPseXPECbkjWCa6MnjNokrgYjMqmKndv2rSnekmSK2DjL",
}
DEV_FREE_BALANCE = 1_000_000_000_000_000  # 100,000 PAS at 10 decimals
__all__ = ["DEV_ACCOUNTS", "ServerError", "down", "port_open", "servers", "status", "up"]


def _mosquitto(s: CitygridSettings) -> Server:
    def prepare(d: Path) -> None:
        (d / "data").mkdir(exist_ok=True)
        (d / "mosquitto.conf").write_text(
            f"listener {s.mqtt.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Run as whoever started us: as root, mosquitto would otherwise switch to the
            # `mosquitto` user and lose write access to the project's data directory.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {d / 'data'}/\n"
            # A persistent session of an offline ingest must hold a long outage's readings.
            "max_queued_messages 2000000\n"
            "max_inflight_messages 1000\n"
            "log_dest stdout\n"
        )

    return Server(
        "mosquitto", s.mqtt.port, s.paths.servers_dir / "mosquitto",
        lambda d: ["mosquitto", "-c", str(d / "mosquitto.conf")], prepare, lambda: True, 20,
    )


def _kafka(s: CitygridSettings) -> Server:
    port = s.kafka.bootstrap.rsplit(":", 1)[1]
    controller = int(port) + 1
    lib = s.paths.cache_dir / "kafka" / "lib"

    def prepare(d: Path) -> None:
        if not lib.exists():
            raise ServerError("Kafka jars missing; run scripts/setup.sh")
        logs = d / "data"
        (d / "server.properties").write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{controller}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            f"log.dirs={logs}\nnum.partitions={s.kafka.partitions}\n"
            "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=true\noffsets.topic.num.partitions=4\n"
        )
        (d / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\nlog4j.logger.kafka.server.KafkaRaftServer=INFO\n"
        )
        if not (logs / "meta.properties").exists():
            cluster = "-"
            while cluster.startswith("-"):  # StorageTool would read a leading '-' as an option
                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                [*_java(lib, d), "kafka.tools.StorageTool", "format", "-t", cluster,
                 "-c", str(d / "server.properties")],
                check=True, capture_output=True, cwd=d,
            )

    def ready() -> bool:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=s.kafka.bootstrap, request_timeout_ms=3000)
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    return Server(
        "kafka", int(port), s.paths.servers_dir / "kafka",
        lambda d: [*_java(lib, d), "kafka.Kafka", str(d / "server.properties")],
        prepare, ready, 120,
    )


def _java(lib: Path, d: Path) -> list[str]:
    return [
        "java", "-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{d / 'log4j.properties'}", "-cp", f"{lib}/*",
    ]


def _chain(s: CitygridSettings) -> Server:
    chain_dir = s.paths.cache_dir / "chain"
    genesis = s.chain.genesis.resolve()

    def prepare(d: Path) -> None:
        if not (chain_dir / "node_modules" / ".bin" / "chopsticks").exists():
            raise ServerError("chopsticks missing; run scripts/setup.sh")
        if not genesis.exists():
            raise ServerError(f"chain spec not found at {genesis}; set CITYGRID_CHAIN__GENESIS")
        accounts = [[[addr], {"providers": 1, "data": {"free": DEV_FREE_BALANCE}}]
                    for addr in DEV_ACCOUNTS.values()]
        config = {
            "genesis": str(genesis), "port": s.chain.port, "build-block-mode": "Instant",
            "import-storage": {"System": {"Account": accounts}},
        }
        # JSON is YAML, so no YAML writer is needed.
        (d / "chain.yml").write_text(json.dumps(config, indent=1))

    def ready() -> bool:
        return port_open("127.0.0.1", s.chain.port)

    return Server(
        "chain", s.chain.port, s.paths.servers_dir / "chain",
        lambda d: [str(chain_dir / "node_modules" / ".bin" / "chopsticks"),
                   f"--config={d / 'chain.yml'}", "--addr", "127.0.0.1"],
        prepare, ready, 120,
    )


def servers(s: CitygridSettings) -> dict[str, Server]:
    """The local platform's servers by name; Prometheus only where it is installed, since
    nothing but the dashboards needs it."""
    found = {"mosquitto": _mosquitto(s), "kafka": _kafka(s), "chain": _chain(s)}
    if shutil.which("prometheus"):
        found["prometheus"] = prometheus_server(s)
    return found


def up(s: CitygridSettings, names: list[str] | None = None) -> list[str]:
    """Start the named servers (all by default) in parallel; return those this call started."""
    chosen = [srv for name, srv in servers(s).items() if names is None or name in names]
    with ThreadPoolExecutor(len(chosen) or 1) as pool:
        started = list(pool.map(Server.start, chosen))
    return [srv.name for srv, st in zip(chosen, started, strict=True) if st]


def down(s: CitygridSettings, names: list[str] | None = None) -> None:
    """Stop the named servers (all by default)."""
    for name, srv in servers(s).items():
        if names is None or name in names:
            srv.stop()


def status(s: CitygridSettings) -> dict[str, bool]:
    """Which servers answer on their ports."""
    return {name: port_open("127.0.0.1", srv.port) for name, srv in servers(s).items()}
