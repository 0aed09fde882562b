"""The release archive's layout, the agent's settings, the devices file's validation and the sandboxed
systemd unit (checked by systemd-analyze verify)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from citygrid.ops.deploy import DeployError, Device, agent_env, env_file, release_archive, unit_file
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


def test_unit_runs_the_current_release_as_a_sandboxed_unprivileged_service() -> None:
    unit = unit_file(Device(name="pi", host="h", device_key=Path("k"), root="/opt/cg")).splitlines()
    assert ("ExecStart=/opt/cg/current/venv/bin/python -m citygrid edge run --key %d/device.key "
            "--outbox /var/lib/citygrid-edge/outbox.db --modbus 127.0.0.1:502 --district d1") in unit
    for line in ("EnvironmentFile=/opt/cg/config/agent.env", "Restart=always",
                 "LoadCredential=device.key:/opt/cg/config/device.key", "DynamicUser=yes",
                 "StateDirectory=citygrid-edge", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service"):
        assert line in unit, line
    assert not any(line.startswith(("User=root", "ReadWritePaths=/")) for line in unit)


@pytest.mark.parametrize("entry", [
    {"name": "pi\nExecStartPre=/bin/sh"}, {"host": "h\n[Service]"}, {"root": "/opt/cg\nUser=root"},
    {"root": "/opt/../etc"}, {"root": "relative/path"}, {"root": "/opt/cg %h"}, {"user": "root;id"},
    {"modbus": "127.0.0.1:502 --until-seq 1"}, {"district": "d1\nEnvironment=X=1"},
    {"python": "/tmp/evil/python3"}, {"python": "/usr/bin/python3 -c import os"},
    {"deps": "site:/tmp/evil"}, {"deps": "site:/x\nimport os; os.system('id')"},
    {"env": {"CITYGRID_MQTT__HOST": "h\nLD_PRELOAD=/tmp/x.so"}}, {"env": {"LD_PRELOAD": "/tmp/x.so"}},
    {"env": {"PYTHONPATH": "/tmp/evil"}}, {"env": {"CITYGRID_EDGE__COMMAND_PUBLIC_KEY": "ab" * 32}},
    {"env": {"CITYGRID_PATHS__DATA_DIR": "/tmp"}}, {"env": {"CITYGRID_MQTT__HOST": "$(id)"}},
    {"agent_args": "--modbus 1:2"}, {"unknown": 1},
])
def test_devices_file_values_that_could_inject_are_refused(entry: dict) -> None:
    with pytest.raises(DeployError, match="refused"):
        Device.parse({"name": "pi", "host": "10.0.0.7", "device_key": "k"} | entry)


def test_a_valid_entry_parses_and_env_file_refuses_line_breaks() -> None:
    d = Device.parse({"name": "pi-7", "host": "10.0.0.7", "device_key": "k", "root": "/opt/citygrid-edge",
                      "python": "/usr/bin/python3.11", "deps": "provisioned", "modbus": "meter.local:502",
                      "district": "north_3", "env": {"CITYGRID_MQTT__HOST": "broker.city.example"}})
    assert d.modbus == "meter.local:502" and d.env == {"CITYGRID_MQTT__HOST": "broker.city.example"}
    assert env_file({"CITYGRID_MQTT__PORT": "8883"}) == "CITYGRID_MQTT__PORT=8883\n"
    with pytest.raises(DeployError):
        env_file({"CITYGRID_MQTT__HOST": "h\nLD_PRELOAD=/x"})


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install -y systemd (scripts/setup)"
    root = tmp_path / "cg"
    (root / "current/venv/bin").mkdir(parents=True)
    (root / "current/venv/bin/python").symlink_to(sys.executable)
    (root / "config").mkdir()
    (root / "config/agent.env").write_text("CITYGRID_MQTT__PORT=8883\n")
    (root / "config/device.key").write_text("00" * 32)
    unit = tmp_path / "citygrid-edge.service"
    unit.write_text(unit_file(Device(name="pi", host="h", device_key=Path("k"), root=str(root))))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "citygrid-edge.service" not in proc.stderr, proc.stderr  # no warning about the unit either
