"""The agent's settings, the devices file's validation and the sandboxed systemd unit (checked by
systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citygrid.ops.device_config import (
    NOT_FOR_DEVICES,
    Device,
    DeviceTrust,
    agent_env,
    device_config,
    device_credentials,
    env_file,
    load_devices,
    unit_file,
)
from citygrid.ops.enroll import Credentials
from citygrid.ops.errors import DeployError
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey


def test_agent_gets_only_its_broker_and_edge_settings(settings: CitygridSettings) -> None:
    env = agent_env(settings)
    assert env["CITYGRID_MQTT__HOST"] == settings.mqtt.host
    assert "CITYGRID_EDGE__OUTBOX_MAX_BYTES" in env
    assert all(k.startswith(("CITYGRID_MQTT__", "CITYGRID_EDGE__")) for k in env)


def test_the_operators_identity_and_paths_never_reach_a_device(settings: CitygridSettings,
                                                                tmp_path: Path) -> None:
    (tmp_path / "op.json").write_text('{"username": "operator", "password": "op-secret", "client_id": "op"}')
    s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={
        "username": "operator", "password": "op-secret", "client_id": "op",
        "credentials_file": tmp_path / "op.json"})})
    env = agent_env(s)
    assert not NOT_FOR_DEVICES & set(env)
    assert "op-secret" not in str(env) and str(s.mqtt.admin_file) not in str(env)


def _enrolled(tmp_path: Path, name: str = "pi") -> tuple[Device, Credentials]:
    key = DeviceKey.generate()
    key.save(tmp_path / f"{name}.key")
    creds = Credentials.new(key.device_id, f"edge-{key.device_id}")
    (tmp_path / f"{name}.key.mqtt.env").write_text(creds.env())  # as `citygrid edge enroll` writes it
    return Device(name=name, host="10.0.0.7", device_key=tmp_path / f"{name}.key", root="/opt/cg"), creds


def test_device_config_carries_its_identity_trust_and_no_secret_in_env_or_unit(tmp_path: Path) -> None:
    device, creds = _enrolled(tmp_path)
    trust = DeviceTrust(b"-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n", "ab" * 32)
    config = device_config(device, {"CITYGRID_MQTT__HOST": "broker.city.example"}, trust)
    assert {n: m for n, (_, m) in config.items()} == {
        "agent.env": 0o600, "device.key": 0o600, "mqtt-credentials.json": 0o600, "mqtt-ca.crt": 0o644,
        "citygrid-edge.service": 0o644, "run-unit.py": 0o644}
    assert Credentials.read(_written(tmp_path, config["mqtt-credentials.json"][0])) == creds
    assert config["mqtt-ca.crt"][0] == trust.broker_ca
    env, unit = config["agent.env"][0].decode(), config["citygrid-edge.service"][0].decode()
    assert f"CITYGRID_EDGE__COMMAND_PUBLIC_KEY={'ab' * 32}" in env.splitlines()
    assert creds.password not in env and creds.password not in unit
    assert "CITYGRID_MQTT__CA_FILE" not in env and "CITYGRID_MQTT__CREDENTIALS_FILE" not in env


def _written(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / "written").write_bytes(data)
    return tmp_path / "written"


def test_deploy_refuses_a_device_without_or_with_anothers_credentials(tmp_path: Path) -> None:
    device, _ = _enrolled(tmp_path)
    other, _ = _enrolled(tmp_path, "other")
    with pytest.raises(DeployError, match="is the identity of"):
        device_credentials(device.model_copy(update={"mqtt_credentials": tmp_path / "other.key.mqtt.env"}))
    (tmp_path / "pi.key.mqtt.env").unlink()
    with pytest.raises(DeployError, match="enrol the device first"):
        device_credentials(device)
    assert device_credentials(other).username == DeviceKey.load(tmp_path / "other.key").device_id


def test_trust_needs_the_brokers_ca_and_a_command_key(settings: CitygridSettings, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    s = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"ca_file": ca})})
    with pytest.raises(DeployError, match="no command public key"):
        DeviceTrust.from_settings(s)
    authority = DeviceKey.generate()
    authority.save(tmp_path / "command.key")
    traffic = s.traffic.model_copy(update={"command_key_file": tmp_path / "command.key"})
    s = s.model_copy(update={"traffic": traffic})
    assert DeviceTrust.from_settings(s).command_public_key == authority.public_key.hex()
    ca.write_text("not a certificate")
    with pytest.raises(DeployError, match="CA certificate"):
        DeviceTrust.from_settings(s)


def test_unit_runs_the_current_release_as_a_sandboxed_unprivileged_service() -> None:
    unit = unit_file(Device(name="pi", host="h", device_key=Path("k"), root="/opt/cg")).splitlines()
    assert ("ExecStart=/opt/cg/current/venv/bin/python -m citygrid edge run --key %d/device.key "
            "--outbox /var/lib/citygrid-edge/outbox.db --modbus 127.0.0.1:502 --district d1 --with-models "
            "--release-model /opt/cg/current/model.onnx") in unit
    for line in ("EnvironmentFile=/opt/cg/config/agent.env", "Restart=always",
                 "LoadCredential=device.key:/opt/cg/config/device.key",
                 "LoadCredential=mqtt-credentials.json:/opt/cg/config/mqtt-credentials.json",
                 "LoadCredential=mqtt-ca.crt:/opt/cg/config/mqtt-ca.crt",
                 "Environment=CITYGRID_MQTT__CREDENTIALS_FILE=%d/mqtt-credentials.json",
                 "Environment=CITYGRID_MQTT__CA_FILE=%d/mqtt-ca.crt", "DynamicUser=yes",
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
    {"env": {"CITYGRID_MQTT__CA_FILE": "/tmp/evil-ca.crt"}}, {"env": {"CITYGRID_MQTT__USERNAME": "other"}},
    {"env": {"CITYGRID_MQTT__CREDENTIALS_FILE": "/tmp/x.json"}}, {"env": {"CITYGRID_MQTT__PASSWORD": "x"}},
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


def test_devices_file_merges_defaults_and_checks_every_entry(tmp_path: Path) -> None:
    (tmp_path / "devices.yaml").write_text(
        "defaults: {device_key: k, deps: provisioned}\n"
        "devices:\n  - {name: canary, host: 10.0.0.1}\n  - {name: pi-2, host: 10.0.0.2, district: north}\n")
    canary, pi2 = load_devices(tmp_path / "devices.yaml")
    assert (canary.name, canary.deps) == ("canary", "provisioned")
    assert (pi2.district, pi2.deps) == ("north", "provisioned")
    (tmp_path / "bad.yaml").write_text("devices:\n  - {name: x, host: 'h\\n[Service]', device_key: k}\n")
    with pytest.raises(DeployError, match="refused"):
        load_devices(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("hosts: []\n")
    with pytest.raises(DeployError, match="devices"):
        load_devices(tmp_path / "empty.yaml")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install -y systemd (scripts/setup)"
    root = tmp_path / "cg"
    (root / "current/venv/bin").mkdir(parents=True)
    (root / "current/venv/bin/python").symlink_to(sys.executable)
    (root / "config").mkdir()
    (root / "config/agent.env").write_text("CITYGRID_MQTT__PORT=8883\n")
    (root / "config/device.key").write_text("00" * 32)
    (root / "config/mqtt-credentials.json").write_text("{}")
    (root / "config/mqtt-ca.crt").write_text("")
    unit = tmp_path / "citygrid-edge.service"
    unit.write_text(unit_file(Device(name="pi", host="h", device_key=Path("k"), root=str(root))))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "citygrid-edge.service" not in proc.stderr, proc.stderr  # no warning about the unit either


def test_the_agent_takes_its_identity_from_the_shipped_credentials_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device, creds = _enrolled(tmp_path)
    config = device_config(device, {}, DeviceTrust(b"-----BEGIN CERTIFICATE-----\n", "ab" * 32))
    shipped = _written(tmp_path, config["mqtt-credentials.json"][0])
    monkeypatch.setenv("CITYGRID_MQTT__CREDENTIALS_FILE", str(shipped))
    m = CitygridSettings(_env_file=None).mqtt
    assert (m.username, m.password, m.client_id) == (creds.username, creds.password, creds.client_id)
    assert creds.password not in repr(m)
    shipped.write_text('{"username": "u", "pass": "' + creds.password + '"}')
    with pytest.raises(ValueError, match="cannot read MQTT credentials") as refused:
        CitygridSettings(_env_file=None)
    assert creds.password not in str(refused.value)  # the error names the file, never its contents
