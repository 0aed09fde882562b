"""The release archive's layout, the agent's settings and the systemd unit (pure logic)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from citygrid.ops.deploy import Device, agent_env, release_archive, unit_file
from citygrid.settings import CitygridSettings


def test_release_holds_core_and_edge_as_installed_and_is_reproducible() -> None:
    a, b = release_archive(), release_archive()
    assert a == b  # the release id is a hash of these bytes: a redeploy must be a no-op
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        names = tar.getnames()
    assert "citygrid/reading.py" in names and "citygrid/edge/agent.py" in names
    assert "citygrid/edge/traffic/intersection.py" in names
    tooling = ("citygrid/stream", "citygrid/ledger", "citygrid/sim", "citygrid/devtools", "citygrid/ops")
    assert not any(n.startswith(tooling) for n in names)


def test_agent_gets_only_its_broker_and_edge_settings(settings: CitygridSettings) -> None:
    env = agent_env(settings)
    assert env["CITYGRID_MQTT__HOST"] == settings.mqtt.host
    assert "CITYGRID_EDGE__OUTBOX_MAX_BYTES" in env
    assert all(k.startswith(("CITYGRID_MQTT__", "CITYGRID_EDGE__")) for k in env)


def test_unit_runs_the_current_release_with_its_config() -> None:
    unit = unit_file(Device(name="pi", host="h", device_key=Path("k"), root="/opt/cg"))
    assert "ExecStart=/opt/cg/current/venv/bin/python -m citygrid edge run" in unit
    assert "--modbus 127.0.0.1:502" in unit
    assert "EnvironmentFile=/opt/cg/config/agent.env" in unit and "Restart=always" in unit
