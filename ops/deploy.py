"""`citygrid edge deploy`: install or upgrade the agent on devices over SSH, rolling back on failure.

Layout on a device (under `root`, default /opt/citygrid-edge):
  releases/<id>/src       the citygrid core + edge sources of this release
  releases/<id>/venv      its virtual environment
  current -> releases/<id>  switched atomically (rename of a symlink)
  config/agent.env        CITYGRID_* settings of the agent;  config/device.key (0600)
  state/                  outbox and models, kept across releases
A release is built and checked (`citygrid edge check` with the release's own
interpreter) before `current` moves; if the check, the switch or the service
restart fails, `current` goes back to the previous release and the new one is
removed, so a device is never left on a broken agent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shlex
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import structlog

from citygrid.errors import CitygridError
from citygrid.settings import CitygridSettings

log = structlog.get_logger(__name__)


class DeployError(CitygridError):
    """Installing or upgrading the agent on a device failed (the device was rolled back)."""


UNIT = "citygrid-edge"
# What a device installs from the package index when it has no pre-provisioned site (deps="pip").
EDGE_REQUIREMENTS = ("pydantic==2.14.4", "pydantic-settings==2.16.3", "msgpack==1.2.4", "pynacl==1.6.2",
                     "typer==0.29.2", "rich==15.0.0", "structlog==26.1.0", "prometheus-client==0.26.0",
                     "paho-mqtt==2.2.0", "numpy==2.4.6", "onnxruntime==1.32.0", "pymodbus==3.16.1")


@dataclass
class Device:
    """One device to deploy to, as listed in the devices file."""

    name: str
    host: str
    device_key: Path
    port: int = 22
    user: str = "root"
    ssh_key: Path | None = None
    root: str = "/opt/citygrid-edge"
    python: str = "/usr/bin/python3"
    # "pip" installs EDGE_REQUIREMENTS; "site:<dir>" reuses a pre-provisioned site-packages.
    deps: str = "pip"
    agent_args: str = "--modbus 127.0.0.1:502"
    env: dict[str, str] = field(default_factory=dict)


def _device_sources() -> list[tuple[Path, str]]:
    """(file, name in the release) of what a device runs: core's modules and the edge package, found
    where this interpreter imports them from (a checkout or an installed wheel alike)."""
    import citygrid
    import citygrid.edge

    core = Path(citygrid.__file__).parent
    edge = Path(citygrid.edge.__file__).parent
    files = [(p, f"citygrid/{p.name}") for p in core.glob("*.py")]
    files += [(p, f"citygrid/edge/{p.relative_to(edge)}") for p in edge.rglob("*.py")]
    return sorted(files, key=lambda f: f[1])


def release_archive() -> bytes:
    """A tar.gz of the citygrid sources an agent needs (core and edge only: no simulators, dev or
    operator tooling), laid out as the wheel installs them."""
    buf = io.BytesIO()
    # gzip's header carries a time: pin it, so the same sources give the same release id.
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path, name in _device_sources():
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def agent_env(s: CitygridSettings) -> dict[str, str]:
    """The settings a device's agent gets from the operator's: its broker and edge sections only."""
    return {k: v for k, v in s.as_env({}).items() if k.startswith(("CITYGRID_MQTT__", "CITYGRID_EDGE__"))}


def unit_file(d: Device) -> str:
    """The systemd unit running the agent from `current`, restarted if it dies."""
    return (f"[Unit]\nDescription=citygrid edge agent\nAfter=network-online.target\n\n[Service]\n"
            f"EnvironmentFile={d.root}/config/agent.env\nWorkingDirectory={d.root}/state\n"
            f"ExecStart={d.root}/current/venv/bin/python -m citygrid edge run "
            f"--key {d.root}/config/device.key --outbox {d.root}/state/outbox.db {d.agent_args}\n"
            "Restart=always\nRestartSec=2\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


class Remote:
    """An SSH session to one device."""

    def __init__(self, d: Device, known_hosts: Path | None) -> None:
        self.device = d
        self.ssh = paramiko.SSHClient()
        if known_hosts:
            self.ssh.load_host_keys(str(known_hosts))
        else:
            self.ssh.load_system_host_keys()
        # An unknown host key is refused: deploying a key to an impostor would leak it.
        self.ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.ssh.connect(d.host, d.port, d.user, key_filename=str(d.ssh_key) if d.ssh_key else None,
                             timeout=15, allow_agent=False, look_for_keys=d.ssh_key is None)
        except (paramiko.SSHException, OSError) as exc:
            raise DeployError(f"{d.name}: cannot SSH to {d.user}@{d.host}:{d.port}: {exc}; check the "
                              "host key in known_hosts and the SSH key") from exc
        self.sftp = self.ssh.open_sftp()

    def sh(self, cmd: str, timeout_s: float = 600) -> str:
        """Run a shell command; raise DeployError with its output if it fails."""
        _, out, err = self.ssh.exec_command(cmd, timeout=timeout_s)
        status = out.channel.recv_exit_status()
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if status != 0:
            detail = (stderr or stdout)[-800:]
            raise DeployError(f"{self.device.name}: `{cmd[:120]}` failed ({status}): {detail}")
        return stdout

    def put(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """Write a file atomically (temp name, then rename)."""
        with self.sftp.open(path + ".tmp", "wb") as f:
            f.write(data)
        self.sftp.chmod(path + ".tmp", mode)
        self.sftp.posix_rename(path + ".tmp", path)

    def close(self) -> None:
        """End the SFTP channel and the SSH session."""
        self.sftp.close()
        self.ssh.close()


def deploy_device(d: Device, archive: bytes, agent_env: dict[str, str],
                  known_hosts: Path | None = None) -> str:
    """Install or upgrade one device; return the release id now current. Rolls back on failure."""
    release = hashlib.sha256(archive + d.deps.encode() + d.python.encode()).hexdigest()[:12]
    r = Remote(d, known_hosts)
    root, q = d.root, shlex.quote
    rel = f"{root}/releases/{release}"
    try:
        previous = r.sh(f"readlink {q(root)}/current || true").strip()
        if previous.endswith(f"/{release}"):
            log.info("deploy_up_to_date", device=d.name, release=release)
            _write_config(r, d, agent_env)
            return release
        r.sh(f"mkdir -p {q(rel)}/src {q(root)}/config {q(root)}/state && chmod 700 {q(root)}/config")
        r.put(archive, f"{rel}/src.tar.gz")
        r.sh(f"tar -xzf {q(rel)}/src.tar.gz -C {q(rel)}/src && rm {q(rel)}/src.tar.gz")
        try:
            _build_venv(r, d, rel)
            _write_config(r, d, agent_env)
            r.sh(f"{q(rel)}/venv/bin/python -m citygrid edge check --key {q(root)}/config/device.key",
                 timeout_s=120)
        except DeployError:
            r.sh(f"rm -rf {q(rel)}")
            log.error("deploy_check_failed_kept_previous", device=d.name, release=release, previous=previous)
            raise
        try:
            _activate(r, root, rel)
            _restart(r, d)
        except DeployError:
            if previous:
                _activate(r, root, previous)
                _restart(r, d)
            r.sh(f"rm -rf {q(rel)}")
            log.error("deploy_rolled_back", device=d.name, release=release, previous=previous)
            raise
        # Keep the three newest releases, so a manual rollback stays possible.
        r.sh(f"cd {q(root)}/releases && ls -1t | tail -n +4 | xargs -r rm -rf")
        log.info("deployed", device=d.name, release=release, previous=previous or None)
        return release
    finally:
        r.close()


def _build_venv(r: Remote, d: Device, rel: str) -> None:
    q = shlex.quote
    r.sh(f"{q(d.python)} -m venv {q(rel)}/venv")
    site = r.sh(f"{q(rel)}/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'"
                ).strip()
    # Sorted .pth files: the release's own sources come before any shared site.
    r.put(f"{rel}/src\n".encode(), f"{site}/00-citygrid-release.pth")
    if d.deps.startswith("site:"):
        r.put(f"{d.deps[5:]}\n".encode(), f"{site}/zz-provisioned-site.pth")
    elif d.deps == "pip":
        r.sh(f"{q(rel)}/venv/bin/pip install --quiet {' '.join(q(x) for x in EDGE_REQUIREMENTS)}",
             timeout_s=1800)
    else:
        raise DeployError(f"{d.name}: deps must be 'pip' or 'site:<dir>', not {d.deps!r}")


def _write_config(r: Remote, d: Device, agent_env: dict[str, str]) -> None:
    env = {**agent_env, **d.env, "CITYGRID_PATHS__MODELS_DIR": f"{d.root}/state/models",
           "CITYGRID_PATHS__DATA_DIR": f"{d.root}/state"}
    r.put("".join(f"{k}={v}\n" for k, v in sorted(env.items())).encode(), f"{d.root}/config/agent.env", 0o600)
    r.put(Path(d.device_key).read_bytes(), f"{d.root}/config/device.key", 0o600)
    r.put(unit_file(d).encode(), f"{d.root}/config/{UNIT}.service")


def _activate(r: Remote, root: str, rel: str) -> None:
    q = shlex.quote
    r.sh(f"ln -sfn {q(rel)} {q(root)}/current.new && mv -T {q(root)}/current.new {q(root)}/current")


def _restart(r: Remote, d: Device) -> None:
    """(Re)start the unit where systemd runs; elsewhere (containers, tests) leave the unit installed."""
    q = shlex.quote
    if r.sh("test -d /run/systemd/system && echo yes || echo no").strip() != "yes":
        log.warning("no_systemd_on_device_unit_not_started", device=d.name)
        return
    r.sh(f"ln -sf {q(d.root)}/config/{UNIT}.service /etc/systemd/system/{UNIT}.service && "
         f"systemctl daemon-reload && systemctl enable {UNIT} && systemctl restart {UNIT}")
    r.sh(f"sleep 3 && systemctl is-active {UNIT}")
