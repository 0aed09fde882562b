"""`citygrid edge deploy` against a real OpenSSH server on 127.0.0.1: install, check, refuse a broken
upgrade and stay on the working release."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port, wait_until

from citygrid.devtools.local_servers import port_open
from citygrid.ops.deploy import DeployError, Device, deploy_device, release_archive
from citygrid.signing import DeviceKey

pytestmark = pytest.mark.timeout(180)
SSHD = Path("/usr/sbin/sshd")


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


def test_deploy_installs_then_refuses_a_broken_upgrade(sshd, tmp_path: Path) -> None:
    port, client_key, known_hosts = sshd
    key = DeviceKey.generate()
    key.save(tmp_path / "device.key")
    root = tmp_path / "device-root"
    site = next(p for p in sys.path if p.endswith("site-packages") and "/.venv/" in p)
    device = Device(name="pi-test", host="127.0.0.1", port=port, user=getpass.getuser(),
                    ssh_key=client_key, device_key=tmp_path / "device.key", root=str(root),
                    python="/usr/bin/python3.11", deps="provisioned")
    archive = release_archive()
    env = {"CITYGRID_MQTT__HOST": "10.0.0.1", "CITYGRID_MQTT__PORT": "1883"}

    release = deploy_device(device, archive, env, known_hosts, provisioned_site=site)
    assert (root / "current").resolve() == root / "releases" / release
    check = subprocess.run([str(root / "current/venv/bin/python"), "-m", "citygrid", "edge", "check",
                            "--key", str(root / "config/device.key")], capture_output=True, text=True,
                           # Nothing of this process's environment: the release must run on its own.
                           env={"PATH": os.defpath, "CITYGRID_PATHS__MODELS_DIR": str(root / "state/models")})
    assert check.returncode == 0, check.stderr
    assert key.device_id in check.stdout
    assert str(root / "releases" / release / "src" / "citygrid") in check.stdout.replace("\n", "")
    assert (root / "config/device.key").stat().st_mode & 0o777 == 0o600
    assert "CITYGRID_MQTT__HOST=10.0.0.1" in (root / "config/agent.env").read_text()
    assert "ExecStart=" in (root / "config/citygrid-edge.service").read_text()

    unit = (root / "config/citygrid-edge.service").read_text()
    assert "DynamicUser=yes" in unit and "NoNewPrivileges=yes" in unit
    assert "zz-provisioned-site.pth" in str(list((root / "current/venv").rglob("*.pth")))

    with pytest.raises(DeployError, match="failed"):
        deploy_device(device, archive, env, known_hosts, provisioned_site="/nonexistent/site-packages")
    assert (root / "current").resolve() == root / "releases" / release
    assert sorted(p.name for p in (root / "releases").iterdir()) == [release]

    assert deploy_device(device, archive, env, known_hosts, provisioned_site=site) == release  # idempotent


def test_deploy_refuses_an_unknown_host_key(sshd, tmp_path: Path) -> None:
    port, client_key, _ = sshd
    (tmp_path / "empty_known_hosts").write_text("")
    DeviceKey.generate().save(tmp_path / "device.key")
    device = Device(name="impostor", host="127.0.0.1", port=port, ssh_key=client_key,
                    device_key=tmp_path / "device.key", root=str(tmp_path / "r"))
    with pytest.raises(DeployError, match="cannot SSH"):
        deploy_device(device, b"", {}, tmp_path / "empty_known_hosts")
