"""The real servers of a local platform: Mosquitto, Kafka, the dev chain (and Prometheus).

The demo, the test fixtures and `citygrid servers` share this one module so
that what the tests run against is exactly what a user starts. Each server's
configuration, data, log and pid file live under `paths.servers_dir/<name>`.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from citygrid.devtools.local_kafka import kafka_server
from citygrid.devtools.pki import LocalPki
from citygrid.devtools.prometheus import server as prometheus_server
from citygrid.devtools.server import Server, ServerError, port_open
from citygrid.errors import ConfigError
from citygrid.mqtt import tls_context
from citygrid.ops.enroll import Credentials
from citygrid.settings import CitygridSettings
from citygrid.storage import atomic_write

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
    return mosquitto_server(s, s.mqtt.port, s.paths.servers_dir / "mosquitto")


def mosquitto_server(s: CitygridSettings, port: int, d: Path) -> Server:
    """The local Mosquitto on `port` with its files in `d`: TLS only (the local CA's server
    certificate), no anonymous clients, identities and ACLs from the dynamic-security plugin."""
    return Server("mosquitto", port, d, lambda d: ["mosquitto", "-c", str(d / "mosquitto.conf")],
                  lambda d: write_mosquitto_config(s, port, d), lambda: tls_answers(s, port), 20)


def dynsec_plugin() -> Path:
    """Debian's dynamic-security plugin (`dpkg -L mosquitto`), for whichever architecture."""
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so")) + sorted(
        Path("/usr/lib").glob("mosquitto_dynamic_security.so"))
    if not found:
        raise ServerError("mosquitto_dynamic_security.so not found; run scripts/setup.sh")
    return found[0]


def write_mosquitto_config(s: CitygridSettings, port: int, d: Path) -> None:
    """The broker's config, and on first start its dynamic-security file holding only the administrator
    (whose credentials go to `mqtt.admin_file`, 0600): every other identity is enrolled over MQTT."""
    pki = LocalPki(Path(s.mqtt.ca_file).parent).ensure()
    (d / "data").mkdir(parents=True, exist_ok=True)
    dynsec = d / "dynamic-security.json"
    if not dynsec.exists() or not Path(s.mqtt.admin_file).exists():
        admin = _admin_credentials(s)
        initial = _dynsec_initial(admin.username, admin.password)
        atomic_write(dynsec, json.dumps(initial, indent=1), mode=0o600)
    limit = s.mqtt.max_message_bytes
    (d / "mosquitto.conf").write_text(
        "per_listener_settings false\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca_cert}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        "tls_version tlsv1.2\n"
        "allow_anonymous false\n"
        f"plugin {dynsec_plugin()}\nplugin_opt_config_file {dynsec}\n"
        # Run as whoever started us: as root, mosquitto would otherwise switch to the
        # `mosquitto` user and lose write access to the project's data directory.
        f"user {getpass.getuser()}\n"
        "persistence true\n"
        f"persistence_location {d / 'data'}/\n"
        # One oversized message is refused by the broker before any client has to hold it.
        f"max_packet_size {limit}\n"
        # Per client: a persistent session of an offline ingest must hold a long outage's readings.
        f"max_queued_messages {s.mqtt.max_queued_messages}\n"
        "max_inflight_messages 1000\n"
        "log_dest stdout\n"
    )


def _admin_credentials(s: CitygridSettings) -> Credentials:
    path = Path(s.mqtt.admin_file)
    if path.exists():
        return Credentials.load(path)
    admin = Credentials.new("citygrid-admin", "citygrid-admin")
    admin.save(path)
    return admin


def _dynsec_initial(username: str, password: str) -> dict:
    """The plugin's file as `mosquitto_ctrl dynsec init` writes it, with an administrator limited to the
    plugin's own control topics and every default access denied (unsubscribing aside)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    control = "$CONTROL/dynamic-security/#"
    return {
        "clients": [{"username": username, "textName": "citygrid broker administrator",
                     "password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
                     "iterations": 101, "roles": [{"rolename": "admin"}]}],
        "roles": [{"rolename": "admin", "acls": [
            {"acltype": "publishClientSend", "topic": control, "allow": True},
            {"acltype": "publishClientReceive", "topic": control, "allow": True},
            {"acltype": "subscribePattern", "topic": control, "allow": True},
        ]}],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
    }


def tls_answers(s: CitygridSettings, port: int) -> bool:
    """True once a TLS handshake with the local CA's broker succeeds on `port` (a plain broker does not)."""
    try:
        ctx = tls_context(s.mqtt)
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except (OSError, ConfigError):
        return False


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
    found = {"mosquitto": _mosquitto(s), "kafka": kafka_server(s), "chain": _chain(s)}
    if shutil.which("prometheus"):
        found["prometheus"] = prometheus_server(s)
    return found


def up(s: CitygridSettings, names: list[str] | None = None) -> list[str]:
    """Start the named servers (all by default) in parallel; return those this call started."""
    chosen = [srv for name, srv in servers(s).items() if names is None or name in names]
    with ThreadPoolExecutor(len(chosen) or 1) as pool:
        futures = [pool.submit(srv.start) for srv in chosen]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        # Leave nothing half up: a later start would find the ports taken by servers nobody stops.
        for srv, f in zip(chosen, futures, strict=True):
            if f.exception() is None and f.result():
                srv.stop()
        raise failed[0]
    return [srv.name for srv, f in zip(chosen, futures, strict=True) if f.result()]


def down(s: CitygridSettings, names: list[str] | None = None) -> None:
    """Stop the named servers (all by default)."""
    for name, srv in servers(s).items():
        if names is None or name in names:
            srv.stop()


def status(s: CitygridSettings) -> dict[str, bool]:
    """Which servers answer on their ports."""
    return {name: port_open("127.0.0.1", srv.port) for name, srv in servers(s).items()}
