"""Fixtures shared by the whole suite.

Integration tests run against the real local servers (Mosquitto, Kafka, the dev
chain), started once per session by `citygrid.devtools.local_servers` exactly as the demo
starts them. If a server cannot start, the tests that need it error loudly.
Each test gets its own topics, MQTT topic roots, broker identities and client ids, so tests never
see each other's data even though the servers are shared. The broker is TLS-only and knows no
anonymous client: `live` connects as the test's ingest; `support.enrol` enrols a device.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import as_service, free_port, isolated_settings, wait_until

from citygrid.devtools import local_servers
from citygrid.settings import CitygridSettings


@pytest.fixture(scope="session")
def servers() -> Iterator[CitygridSettings]:
    """The real servers, up for the whole session; stopped at the end if this session started
    them (set CITYGRID_LOCAL__KEEP_SERVERS=1 to keep them for the next run)."""
    base = CitygridSettings()
    started = local_servers.up(base)
    yield base
    if started and not base.local.keep_servers:
        local_servers.down(base, started)


@pytest.fixture
def settings(tmp_path: Path) -> CitygridSettings:
    """Isolated settings for a test that needs no servers."""
    return isolated_settings(tmp_path)


@pytest.fixture
def live(servers: CitygridSettings, tmp_path: Path) -> CitygridSettings:
    """Isolated settings for a test on the real servers, connecting to the broker as the test's own
    ingest (`support.enrol` / `support.as_service` give the other identities), with its Kafka topics
    created and the ingest's MQTT session prepared."""
    from citygrid.ops.kafka_access import apply
    from citygrid.stream.ingest import prepare_session
    from citygrid.stream.kafka_topics import ensure_topics

    s = as_service(isolated_settings(tmp_path), "ingest")
    ensure_topics(s.kafka, [s.kafka.readings_topic, s.kafka.dead_letter_topic, s.kafka.stats_topic])
    apply(s)  # every service's ACLs on this test's own topics and groups
    prepare_session(s)
    return s


@pytest.fixture
def meter_server(tmp_path: Path) -> Iterator[int]:
    """A real Modbus TCP meter (pymodbus, SimBench profile) advancing a sample every 0.1 s; its port."""
    port = free_port()
    log = open(tmp_path / "modbus.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "citygrid.sim.modbus_sim", "--port", str(port),
                             "--step-s", "0.1", "--cache-dir", str(CitygridSettings().paths.cache_dir)],
                            stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        assert proc.poll() is None, (tmp_path / "modbus.log").read_text()
        return local_servers.port_open("127.0.0.1", port)

    wait_until(listening, 20, "the modbus server to listen", every_s=0.1)
    yield port
    proc.terminate()
    proc.wait(10)
