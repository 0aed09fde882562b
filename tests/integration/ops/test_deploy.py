"""`citygrid edge deploy` against a real OpenSSH server on 127.0.0.1: install the project's wheel,
check, refuse a broken upgrade and stay on the working release; ship each device its broker identity,
the broker's CA and the command key, so the deployed agent, started as its systemd unit says (no
systemd here: run-unit.py), proves itself with its first reading in Kafka, publishes on the real TLS
broker and installs a model published to it, with no secret in any unit, environment file, log or
output."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml
from support import RunningIngest, as_service, free_port, wait_until

from citygrid.devtools.local_servers import port_open
from citygrid.mqtt import mqtt_client
from citygrid.ops.deploy import deploy_device
from citygrid.ops.device_config import Device, DeviceTrust, agent_env
from citygrid.ops.enroll import Credentials, enroll_device, rotate_device
from citygrid.ops.errors import DeployError
from citygrid.ops.first_reading import FirstReadingGate
from citygrid.ops.model_release import publish_model
from citygrid.ops.release import Release
from citygrid.reading import SignedReading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.storage import atomic_write

pytestmark = pytest.mark.timeout(240)
SSHD = Path("/usr/sbin/sshd")
FAKE_CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A real sshd of this test's own (its host key, its authorized key); yields (port, client key,
    known_hosts)."""
    if not SSHD.exists():
        raise RuntimeError("OpenSSH server missing: run scripts/setup/sshd.sh")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "client.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"StrictModes no\nUsePAM no\nPidFile {d / 'sshd.pid'}\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    log = open(d / "log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log,
                            stderr=subprocess.STDOUT)

    def listening() -> bool:
        assert proc.poll() is None, (d / "log").read_text()
        return port_open("127.0.0.1", port)

    wait_until(listening, 10, "sshd to listen", every_s=0.05)
    host_pub = (d / "host.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    yield port, d / "client", d / "known_hosts"
    proc.terminate()
    proc.wait(10)


def _provisioned_site() -> str:
    return next(p for p in sys.path if p.endswith("site-packages") and "/.venv/" in p)


def _device_key(tmp_path: Path, name: str = "device") -> DeviceKey:
    """A device key and, beside it, broker credentials as `citygrid edge enroll` writes them."""
    key = DeviceKey.generate()
    key.save(tmp_path / f"{name}.key")
    creds = Credentials.new(key.device_id, f"edge-{key.device_id}")
    atomic_write(tmp_path / f"{name}.key.mqtt.env", creds.env(), mode=0o600)
    return key


def test_deploy_installs_then_refuses_a_broken_upgrade(sshd, tmp_path: Path, release: Release,
                                                       device_roots: list[Path]) -> None:
    port, client_key, known_hosts = sshd
    key = _device_key(tmp_path)
    root = tmp_path / "device-root"
    device_roots.append(root)
    site = _provisioned_site()
    device = Device(name="pi-test", host="127.0.0.1", port=port, user=getpass.getuser(),
                    ssh_key=client_key, device_key=tmp_path / "device.key", root=str(root),
                    python="/usr/bin/python3.11", deps="provisioned")
    env = {"CITYGRID_MQTT__HOST": "10.0.0.1", "CITYGRID_MQTT__PORT": "1883"}
    trust = DeviceTrust(FAKE_CA, "ab" * 32)

    done = deploy_device(device, release, env, trust, known_hosts, provisioned_site=site)
    assert (root / "current").resolve() == root / "releases" / done.release
    assert done.previous is None and done.started_by == "run-unit"  # no systemd here: said so
    assert json.loads((root / "current/release.json").read_text())["release"] == done.release
    check = subprocess.run([str(root / "current/venv/bin/python"), "-m", "citygrid", "edge", "check",
                            "--key", str(root / "config/device.key")], capture_output=True, text=True,
                           # Nothing of this process's environment: the release must run on its own.
                           env={"PATH": os.defpath, "CITYGRID_PATHS__MODELS_DIR": str(root / "state/models")})
    assert check.returncode == 0, check.stderr
    assert key.device_id in check.stdout
    # citygrid comes from the wheel installed in the release's venv, not from the operator's checkout.
    installed = root / "current/venv/lib/python3.11/site-packages/citygrid"
    assert str(installed) in check.stdout.replace("\n", "")
    assert (root / "config/device.key").stat().st_mode & 0o777 == 0o600
    assert "CITYGRID_MQTT__HOST=10.0.0.1" in (root / "config/agent.env").read_text()
    unit = (root / "config/citygrid-edge.service").read_text()
    assert "DynamicUser=yes" in unit and "NoNewPrivileges=yes" in unit and "ExecStart=" in unit
    assert "zz-provisioned-site.pth" in str(list((root / "current/venv").rglob("*.pth")))

    with pytest.raises(DeployError, match="failed"):
        deploy_device(device, release, env, trust, known_hosts, provisioned_site="/nonexistent/site-packages")
    assert (root / "current").resolve() == root / "releases" / done.release
    assert sorted(p.name for p in (root / "releases").iterdir()) == [done.release]

    again = deploy_device(device, release, env, trust, known_hosts, provisioned_site=site)
    assert again.release == done.release and again.started_by is None  # idempotent: nothing restarted


def test_deploy_refuses_an_unknown_host_key(sshd, tmp_path: Path) -> None:
    port, client_key, _ = sshd
    (tmp_path / "empty_known_hosts").write_text("")
    _device_key(tmp_path)
    device = Device(name="impostor", host="127.0.0.1", port=port, ssh_key=client_key,
                    device_key=tmp_path / "device.key", root=str(tmp_path / "r"))
    with pytest.raises(DeployError, match="cannot SSH"):
        deploy_device(device, Release("c.whl", b""), {}, DeviceTrust(FAKE_CA, "ab" * 32),
                      tmp_path / "empty_known_hosts")


def test_deployed_agent_gets_its_identity_ca_and_command_key_and_installs_a_published_model(
        sshd, live: CitygridSettings, meter_server: int, small_model: Path, wheel: Path, tmp_path: Path,
        device_roots: list[Path]) -> None:
    port, client_key, known_hosts = sshd
    key = DeviceKey.generate()
    key.save(tmp_path / "pi.key")
    enrolled = enroll_device(live, key.public_key, "meter", "d1", "tests")
    atomic_write(tmp_path / "pi.key.mqtt.env", enrolled.env(), mode=0o600)  # as `citygrid edge enroll`
    authority = DeviceKey.generate()
    authority.save(tmp_path / "command.key")
    s = live.model_copy(update={"traffic": live.traffic.model_copy(
        update={"command_key_file": tmp_path / "command.key"})})
    root = tmp_path / "device-root"
    device_roots.append(root)
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": [{
        "name": "pi-7", "host": "127.0.0.1", "port": port, "user": getpass.getuser(),
        "ssh_key": str(client_key),
        "device_key": str(tmp_path / "pi.key"), "root": str(root), "python": "/usr/bin/python3.11",
        "deps": "provisioned", "modbus": f"127.0.0.1:{meter_server}", "district": "d1"}]}))
    ingest = RunningIngest(live)  # the deploy is proven by the agent's first reading in Kafka
    try:
        cli, rotated, secrets = _deploy_then_rotate(s, key, enrolled, authority, tmp_path, wheel, known_hosts)
        _publishes_then_installs(s, key, authority, small_model, root)
        status = subprocess.run([sys.executable, "-m", "citygrid", "edge", "status",
                                 str(tmp_path / "devices.yaml"), "--known-hosts", str(known_hosts)],
                                capture_output=True, text=True, timeout=120,
                                env={**s.as_env(), "COLUMNS": "1000"})
    finally:
        ingest.close()
    assert status.returncode == 0, status.stdout + status.stderr
    row = next(line for line in status.stdout.splitlines() if "pi-7" in line)
    release = (root / "current").resolve().name
    assert key.device_id in row and release in row and "running" in row and "s ago" in row
    assert "load_nowcast 2" in row  # the model that scored its last reading (published during the test)
    assert "first reading in Kafka after" in cli.stdout and "no systemd on the device" in cli.stdout
    _assert_no_secret({"agent log": (root / "run/agent.log").read_text()},
                      {**secrets, "rotated password": rotated.password})


def _deploy_then_rotate(s: CitygridSettings, key: DeviceKey, enrolled: Credentials, authority: DeviceKey,
                        tmp_path: Path, wheel: Path, known_hosts: Path
                        ) -> tuple[subprocess.CompletedProcess, Credentials, dict[str, str]]:
    """The operator's CLI deploys (its settings hold its own broker identity, here the test's ingest,
    never shipped); then a rotated password reaches the device on a redeploy of the same release."""
    root = tmp_path / "device-root"
    cli = subprocess.run([sys.executable, "-m", "citygrid", "edge", "deploy", str(tmp_path / "devices.yaml"),
                          "--known-hosts", str(known_hosts), "--provisioned-site", _provisioned_site(),
                          "--wheel", str(wheel), "--wait-s", "90"],
                         capture_output=True, text=True, timeout=240,
                         env={**s.as_env(), "COLUMNS": "1000"})  # no wrapping that could split a secret
    assert cli.returncode == 0, cli.stdout + cli.stderr
    config = root / "config"
    modes = {p.name: p.stat().st_mode & 0o777 for p in config.iterdir()}
    assert modes == {"agent.env": 0o600, "device.key": 0o600, "mqtt-credentials.json": 0o600,
                     "mqtt-ca.crt": 0o644, "citygrid-edge.service": 0o644, "run-unit.py": 0o644}
    assert all(p.stat().st_uid == os.getuid() for p in config.iterdir())  # the SSH user's (root on a device)
    assert Credentials.load(config / "mqtt-credentials.json") == enrolled
    assert (config / "mqtt-ca.crt").read_bytes() == Path(s.mqtt.ca_file).read_bytes()
    env = dict(line.split("=", 1) for line in (config / "agent.env").read_text().splitlines())
    assert env["CITYGRID_EDGE__COMMAND_PUBLIC_KEY"] == authority.public_key.hex()
    unit = (config / "citygrid-edge.service").read_text().splitlines()
    assert {"LoadCredential=mqtt-credentials.json:" + str(config / "mqtt-credentials.json"),
            "LoadCredential=mqtt-ca.crt:" + str(config / "mqtt-ca.crt"),
            "Environment=CITYGRID_MQTT__CREDENTIALS_FILE=%d/mqtt-credentials.json",
            "Environment=CITYGRID_MQTT__CA_FILE=%d/mqtt-ca.crt"} <= set(unit)
    secrets = {"device password": enrolled.password, "operator password": str(s.mqtt.password),
               "device key": bytes(key.signing_key).hex(), "command key": bytes(authority.signing_key).hex()}
    _assert_no_secret({"cli output": cli.stdout + cli.stderr, "agent.env": (config / "agent.env").read_text(),
                       "unit": "\n".join(unit)}, secrets)

    rotated = rotate_device(s, key.device_id)
    atomic_write(tmp_path / "pi.key.mqtt.env", rotated.env(), mode=0o600)
    device = Device.parse(yaml.safe_load((tmp_path / "devices.yaml").read_text())["devices"][0])
    with structlog.testing.capture_logs() as logs:
        done = deploy_device(device, Release.from_files(wheel), agent_env(s), DeviceTrust.from_settings(s),
                             known_hosts, _provisioned_site(), FirstReadingGate(s.kafka, 90))
    assert Credentials.load(config / "mqtt-credentials.json") == rotated
    assert any(e.get("config_changed") for e in logs)
    # Restarted with the new password, and proven: a reading after the restart reached Kafka.
    assert done.started_by == "run-unit" and done.first_reading_s is not None
    _assert_no_secret({"deploy logs": repr(logs)}, {**secrets, "rotated password": rotated.password})
    return cli, rotated, secrets


def _publishes_then_installs(s: CitygridSettings, key: DeviceKey, authority: DeviceKey, model: Path,
                             root: Path) -> None:
    """The deployed agent publishes signed readings as its own identity; a model published for it is
    installed and scores its next readings."""
    versions: list[str | None] = []
    observer = as_service(s, "observer")
    watcher = mqtt_client(observer.mqtt, f"watch-{key.device_id}", clean_session=True)
    watcher.on_message = lambda c, u, m: versions.append(
        (r := SignedReading.decode(m.payload).reading()).model and r.model.version)
    watcher.on_connect = lambda c, *_: c.subscribe(f"{s.mqtt.readings_topic}/d1/{key.device_id}", qos=1)
    watcher.connect(s.mqtt.host, s.mqtt.port)
    watcher.loop_start()
    pid = int((root / "run/agent.pid").read_text())
    try:
        def publishing() -> bool:
            assert Path(f"/proc/{pid}").exists(), (root / "run/agent.log").read_text()
            return len(versions) >= 3

        wait_until(publishing, 60, "readings from the deployed agent", every_s=0.2)
        assert versions[0] is None  # no model installed yet
        released = publish_model(as_service(s, "models"), model, [key.device_id], authority)
        state = root / "state" / "models" / "state.json"
        wait_until(lambda: state.exists() and json.loads(state.read_text())["serial"] == released.serial,
                   30, "the deployed agent to install the published model", every_s=0.2)
        wait_until(lambda: "2" in versions, 30, "a reading scored by the published model", every_s=0.2)
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def _assert_no_secret(texts: dict[str, str], secrets: dict[str, str]) -> None:
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in the {where}"
