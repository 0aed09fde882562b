"""Fixtures of the operator tooling's integration tests: a small real model and a real Modbus meter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, wait_until

from citygrid.devtools.local_servers import port_open
from citygrid.settings import CitygridSettings


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real load nowcast (few trees, few profiles), version "2", trained once per session."""
    from citygrid.sim.train_models import train

    out = tmp_path_factory.mktemp("models")
    models = train(CitygridSettings().paths.cache_dir, out, version="2", trees=4, max_profiles=2)
    return models["load_nowcast"]


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
        return port_open("127.0.0.1", port)

    wait_until(listening, 20, "the modbus server to listen", every_s=0.1)
    yield port
    proc.terminate()
    proc.wait(10)
