"""Start, check and stop the real servers of a local platform: Mosquitto, Kafka, the dev chain.

The demo, the test fixtures and `citygrid servers` share this one module so
that what the tests run against is exactly what a user starts. Servers run
detached with pid files under <data_dir>/servers, listen on 127.0.0.1 only,
and keep their logs next to the pid files.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from citygrid.errors import CitygridError
from citygrid.settings import CitygridSettings

log = structlog.get_logger(__name__)

ROOT = Path(__file__).resolve().parent
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


class ServerError(CitygridError):
    """A local server could not be installed, started or reached."""


def repo_root() -> Path:
    """The checkout holding scripts/ and .cache/ (overridable by CITYGRID_ROOT)."""
    env = os.environ.get("CITYGRID_ROOT")
    if env:
        return Path(env)
    for candidate in (Path.cwd(), *Path.cwd().parents):
        if (candidate / "scripts" / "setup.sh").exists():
            return candidate
    raise ServerError("cannot find the citygrid checkout; run from it or set CITYGRID_ROOT")


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections there."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Server:
    """One detached server process and how to tell it is ready."""

    name: str
    port: int
    command: Callable[[Path], list[str]]
    prepare: Callable[[Path], None]
    ready: Callable[[], bool]
    start_timeout_s: float = 90.0

    def dir(self, base: Path) -> Path:
        return base / "servers" / self.name

    def pid(self, base: Path) -> int | None:
        try:
            pid = int((self.dir(base) / "pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, base: Path) -> bool:
        """Start unless already up; True if this call started it."""
        if self.pid(base) and self.ready():
            return False
        if port_open("127.0.0.1", self.port):
            # Started by another checkout or by hand: use it if it answers like our server.
            if self.ready():
                log.info("server_reused", server=self.name, port=self.port)
                return False
            raise ServerError(f"port {self.port} is taken by something that is not {self.name}; "
                              "stop it or configure another port")
        d = self.dir(base)
        d.mkdir(parents=True, exist_ok=True)
        self.prepare(d)
        logf = open(d / "log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            self.command(d), cwd=d, stdout=logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        (d / "pid").write_text(str(proc.pid))
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (d / "log").read_text(errors="replace")[-2000:]
                raise ServerError(f"{self.name} exited with {proc.returncode}:\n{tail}")
            if port_open("127.0.0.1", self.port) and self.ready():
                log.info("server_ready", server=self.name, port=self.port, pid=proc.pid)
                return True
            time.sleep(0.3)
        self.stop(base)
        raise ServerError(f"{self.name} not ready after {self.start_timeout_s:.0f}s; see {d / 'log'}")

    def stop(self, base: Path) -> None:
        """Terminate the process group and wait for it."""
        pid = self.pid(base)
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        (self.dir(base) / "pid").unlink(missing_ok=True)


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
        "mosquitto", s.mqtt.port, lambda d: ["mosquitto", "-c", str(d / "mosquitto.conf")],
        prepare, lambda: True, 20,
    )


def _kafka(s: CitygridSettings) -> Server:
    port = s.kafka.bootstrap.rsplit(":", 1)[1]
    controller = int(port) + 1
    lib = repo_root() / ".cache" / "kafka" / "lib"

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
        "kafka", int(port),
        lambda d: [*_java(lib, d), "kafka.Kafka", str(d / "server.properties")],
        prepare, ready, 120,
    )


def _java(lib: Path, d: Path) -> list[str]:
    return [
        "java", "-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{d / 'log4j.properties'}", "-cp", f"{lib}/*",
    ]


def _chain(s: CitygridSettings) -> Server:
    chain_dir = repo_root() / ".cache" / "chain"
    genesis = _genesis_path()

    def prepare(d: Path) -> None:
        if not (chain_dir / "node_modules" / ".bin" / "chopsticks").exists():
            raise ServerError("chopsticks missing; run scripts/setup.sh")
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
        "chain", s.chain.port,
        lambda d: [str(chain_dir / "node_modules" / ".bin" / "chopsticks"),
                   f"--config={d / 'chain.yml'}", "--addr", "127.0.0.1"],
        prepare, ready, 120,
    )


def _genesis_path() -> Path:
    env = os.environ.get("CITYGRID_CHAIN_GENESIS")
    if env:
        return Path(env).resolve()
    path = repo_root().parent / "shared" / "chain" / "asset-hub-paseo-local.raw.json"
    if not path.exists():
        raise ServerError(f"chain spec not found at {path}; set CITYGRID_CHAIN_GENESIS")
    return path.resolve()


def servers(s: CitygridSettings) -> dict[str, Server]:
    """The local platform's servers by name; Prometheus only where it is installed, since
    nothing but the dashboards needs it."""
    found = {"mosquitto": _mosquitto(s), "kafka": _kafka(s), "chain": _chain(s)}
    if shutil.which("prometheus"):
        from citygrid.devtools.prometheus import server as prometheus_server

        found["prometheus"] = prometheus_server(s)
    return found


def up(s: CitygridSettings, names: list[str] | None = None) -> list[str]:
    """Start the named servers (all by default) in parallel; return those this call started."""
    chosen = [srv for name, srv in servers(s).items() if names is None or name in names]
    base = s.paths.data_dir.resolve()
    with ThreadPoolExecutor(len(chosen) or 1) as pool:
        started = list(pool.map(lambda srv: srv.start(base), chosen))
    return [srv.name for srv, st in zip(chosen, started, strict=True) if st]


def down(s: CitygridSettings, names: list[str] | None = None) -> None:
    """Stop the named servers (all by default)."""
    for name, srv in servers(s).items():
        if names is None or name in names:
            srv.stop(s.paths.data_dir.resolve())


def status(s: CitygridSettings) -> dict[str, bool]:
    """Which servers answer on their ports."""
    return {name: port_open("127.0.0.1", srv.port) for name, srv in servers(s).items()}
