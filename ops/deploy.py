"""`citygrid edge deploy`: install or upgrade the agent on devices over SSH, rolling back on failure.

Layout on a device (under `root`, default /opt/citygrid-edge):
  releases/<id>/src       the citygrid core + edge sources of this release
  releases/<id>/venv      its virtual environment
  current -> releases/<id>  switched atomically (rename of a symlink)
  config/agent.env        CITYGRID_* settings of the agent, the command public key it trusts among them
  config/device.key       its reading key (0600, root's)
  config/mqtt-credentials.json  its broker identity from `citygrid edge enroll` (0600, root's)
  config/mqtt-ca.crt      the CA that signed the broker's certificate
  /var/lib/citygrid-edge  outbox and models (systemd's StateDirectory), kept across releases
The agent runs as a sandboxed systemd service under a dynamic unprivileged user
(`unit_file`): it gets its key, its broker identity and the broker's CA through
systemd's credentials (LoadCredential: a private copy owned by the service's user,
readable by nobody else, gone when it stops), and its settings point at those
copies (CITYGRID_MQTT__CREDENTIALS_FILE, CITYGRID_MQTT__CA_FILE), so the broker
password stands in no unit, environment, command line or log. It writes only its
state directory, holds no capabilities and may open only IP and Unix sockets.

What a device trusts comes from the operator's settings (`DeviceTrust`): the broker's
CA and the command authority's public key; what it is comes from its enrolment (the
credentials file `citygrid edge enroll` wrote beside its key, checked to name this
key's device). Neither can come from the devices file, and the operator's own broker
identity and local paths never reach a device (`agent_env`). A redeploy of the same
release rewrites only what changed and restarts the agent if anything did (a rotated
password, a new command key).

Every value of the devices file is validated (`Device`, strict patterns) before
anything is written, so none can add a line to the unit or the environment file,
override the agent's trusted command key or paths, or add code to the agent's
interpreter: the interpreter must be a system python3, and a pre-provisioned
site-packages directory (deps "provisioned") is the operator's own deploy option
(`deploy_device(provisioned_site=…)`), never a devices-file value; the former
`site:<dir>` (a .pth line written from the devices file) is gone.
A release is built and checked (`citygrid edge check` with the release's own
interpreter) before `current` moves; if the check, the switch or the service
restart fails, `current` goes back to the previous release and the new one is
removed, so a device is never left on a broken agent.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import paramiko
import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from citygrid.errors import CitygridError, ConfigError
from citygrid.ops.enroll import Credentials
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey

log = structlog.get_logger(__name__)


class DeployError(CitygridError):
    """Installing or upgrading the agent on a device failed (the device was rolled back)."""


UNIT = "citygrid-edge"
# What a device installs from the package index when it has no pre-provisioned site (deps="pip").
EDGE_REQUIREMENTS = ("pydantic==2.14.4", "pydantic-settings==2.16.3", "msgpack==1.2.4", "pynacl==1.6.2",
                     "typer==0.29.2", "rich==15.0.0", "structlog==26.1.0", "prometheus-client==0.26.0",
                     "paho-mqtt==2.2.0", "numpy==2.4.6", "onnxruntime==1.32.0", "pymodbus==3.16.1")


# Safe absolute paths: no spaces, quotes, specifiers (%), variables ($), newlines or "..".
SAFE_PATH = r"/[A-Za-z0-9._/+-]{1,200}"


def _safe_path(path: str) -> str:
    if not re.fullmatch(SAFE_PATH, path) or ".." in path.split("/"):
        raise ValueError("must be a plain absolute path (letters, digits, . _ / + -), without ..")
    return path


SafePath = Annotated[str, AfterValidator(_safe_path)]
# What an environment-file value may hold: printable, no quotes, backslashes, `$` or `%` and no newline.
ENV_VALUE = r"^[A-Za-z0-9 _.,:/@+=\[\]{}-]{0,500}$"
# Settings a device entry may set for its agent; never its trust anchors or where its state lives.
ENV_KEY = r"^CITYGRID_(MQTT|EDGE)__[A-Z0-9_]{1,60}$"
# The operator's broker identity and paths on the operator's machine: never sent to a device (it gets
# its own identity and copies of what it trusts).
NOT_FOR_DEVICES = frozenset({"CITYGRID_MQTT__USERNAME", "CITYGRID_MQTT__PASSWORD", "CITYGRID_MQTT__CLIENT_ID",
                             "CITYGRID_MQTT__CREDENTIALS_FILE", "CITYGRID_MQTT__CA_FILE",
                             "CITYGRID_MQTT__ADMIN_FILE"})
PROTECTED_ENV = NOT_FOR_DEVICES | {"CITYGRID_EDGE__COMMAND_PUBLIC_KEY"}
STATE_DIR = f"/var/lib/{UNIT}"  # systemd's StateDirectory= for the unit
# What systemd hands the service (LoadCredential=NAME:{root}/config/NAME) and the setting naming its copy.
CREDENTIALS = {"device.key": None, "mqtt-credentials.json": "CITYGRID_MQTT__CREDENTIALS_FILE",
               "mqtt-ca.crt": "CITYGRID_MQTT__CA_FILE"}


class Device(BaseModel):
    """One device to deploy to, as listed in the devices file; every value checked before use."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    host: str = Field(pattern=r"^[A-Za-z0-9_.:\[\]][A-Za-z0-9_.:\[\]-]{0,252}$")
    device_key: Path
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_key: Path | None = None
    root: SafePath = "/opt/citygrid-edge"
    # A system interpreter only: the devices file cannot point the agent at another program.
    python: str = Field(default="/usr/bin/python3", pattern=r"^/usr(/local)?/bin/python3(\.[0-9]{1,2})?$")
    # "pip" installs EDGE_REQUIREMENTS; "provisioned" uses the operator's pre-provisioned site-packages
    # (deploy_device's provisioned_site), never a directory named in the devices file.
    deps: Literal["pip", "provisioned"] = "pip"
    modbus: str = Field(default="127.0.0.1:502", pattern=r"^[A-Za-z0-9_.-]{1,253}:[0-9]{1,5}$")
    district: str = Field(default="d1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # The device's broker credentials on the operator's machine; default: what `citygrid edge enroll
    # KEY` wrote beside its key (KEY.mqtt.env).
    mqtt_credentials: Path | None = None
    env: dict[Annotated[str, StringConstraints(pattern=ENV_KEY)],
              Annotated[str, StringConstraints(pattern=ENV_VALUE)]] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _not_trust_anchors(cls, env: dict[str, str]) -> dict[str, str]:
        if protected := PROTECTED_ENV & set(env):
            raise ValueError(f"{', '.join(sorted(protected))} come from the operator's settings, not a "
                             "device entry")
        return env

    @classmethod
    def parse(cls, entry: dict) -> Device:
        """A device from its devices-file entry, or DeployError saying which value is refused."""
        try:
            return cls.model_validate(entry)
        except ValidationError as exc:
            where = entry.get("name", "?") if isinstance(entry, dict) else "?"
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise DeployError(f"device entry {str(where)[:64]!r} refused: {errors}") from None


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
    """The settings a device's agent gets from the operator's: its broker and edge sections, without the
    operator's own broker identity or local paths."""
    return {k: v for k, v in s.as_env({}).items()
            if k.startswith(("CITYGRID_MQTT__", "CITYGRID_EDGE__")) and k not in NOT_FOR_DEVICES}


@dataclass(frozen=True)
class DeviceTrust:
    """What every deployed agent trusts: the broker's CA (PEM) and the command authority's public key."""

    broker_ca: bytes
    command_public_key: str  # hex ed25519

    @classmethod
    def from_settings(cls, s: CitygridSettings) -> DeviceTrust:
        """From the operator's settings: the MQTT CA file, and the command public key (set, or derived
        from the command key file the advisor signs with). Both are required: a device without the
        CA cannot reach the broker, and one without the key would refuse every command."""
        ca = Path(s.mqtt.ca_file) if s.mqtt.ca_file else None
        if ca is None or not ca.is_file() or b"-----BEGIN CERTIFICATE-----" not in ca.read_bytes():
            raise DeployError(f"the broker's CA certificate {ca} is missing or not PEM; set "
                              "CITYGRID_MQTT__CA_FILE to the CA that signed the broker's certificate")
        key = s.edge.command_public_key
        if not key and s.traffic.command_key_file is not None:
            key = DeviceKey.load(s.traffic.command_key_file).public_key.hex()
        if not key:
            raise DeployError("no command public key: set CITYGRID_EDGE__COMMAND_PUBLIC_KEY (or "
                              "CITYGRID_TRAFFIC__COMMAND_KEY_FILE); a device deployed without it refuses "
                              "every signal advice and model update")
        return cls(ca.read_bytes(), key)


def device_credentials(d: Device) -> Credentials:
    """The device's broker identity from its enrolment, checked to be this key's device."""
    path = Path(d.mqtt_credentials or f"{d.device_key}.mqtt.env")
    if not path.is_file():
        raise DeployError(f"{d.name}: no broker credentials at {path}; enrol the device first "
                          f"(`citygrid edge enroll {d.device_key} …`) or set mqtt_credentials")
    try:
        creds = Credentials.read(path)
        device_id = DeviceKey.load(d.device_key).device_id
    except ConfigError as exc:
        raise DeployError(f"{d.name}: {exc}") from None
    if creds.username != device_id:
        raise DeployError(f"{d.name}: {path} is the identity of {creds.username[:64]}, not of its key's "
                          f"device {device_id}; point mqtt_credentials at this device's file")
    return creds


def unit_file(d: Device) -> str:
    """The systemd unit running the agent from `current` as a sandboxed, unprivileged service."""
    d = Device.model_validate(d.model_dump())  # never render an unchecked value
    return "\n".join([
        "[Unit]", "Description=citygrid edge agent", "Wants=network-online.target",
        "After=network-online.target", "",
        "[Service]", "Type=simple",
        f"EnvironmentFile={d.root}/config/agent.env",
        # Key, broker identity and CA stay root's (0600); systemd hands the service private copies in
        # its credentials directory (%d), and the settings name those copies. (agent.env never sets
        # these names: an EnvironmentFile would override them.)
        *(f"LoadCredential={name}:{d.root}/config/{name}" for name in CREDENTIALS),
        *(f"Environment={var}=%d/{name}" for name, var in CREDENTIALS.items() if var),
        f"ExecStart={d.root}/current/venv/bin/python -m citygrid edge run --key %d/device.key "
        f"--outbox {STATE_DIR}/outbox.db --modbus {d.modbus} --district {d.district} --with-models",
        f"WorkingDirectory={STATE_DIR}",
        "Restart=always", "RestartSec=2",
        # Who it runs as and what it may touch: a fresh unprivileged user, only its state writable.
        "DynamicUser=yes", f"StateDirectory={UNIT}", "StateDirectoryMode=0700", "UMask=0077",
        "NoNewPrivileges=yes", "CapabilityBoundingSet=", "AmbientCapabilities=",
        "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
        "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes", "ProtectProc=invisible",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces=yes",
        "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes", "RemoveIPC=yes",
        "SystemCallArchitectures=native", "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources", "SystemCallErrorNumber=EPERM", "",
        "[Install]", "WantedBy=multi-user.target", "",
    ])


def env_file(env: dict[str, str]) -> str:
    """The agent's environment file; a key or value that could add a line or a variable is refused."""
    for k, v in env.items():
        if not re.fullmatch(r"CITYGRID_[A-Z0-9_]{1,80}", k) or not re.fullmatch(ENV_VALUE, v):
            raise DeployError(f"agent setting {k[:80]!r} has a name or value that cannot go in an "
                              "environment file (newline, quote, `$`, `%` or `\\`)")
    return "".join(f"{k}={v}\n" for k, v in sorted(env.items()))


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

    def put_if_changed(self, data: bytes, path: str, mode: int) -> bool:
        """`put` unless the file already holds `data` with `mode`; whether it wrote."""
        try:
            with self.sftp.open(path, "rb") as f:
                same = f.read() == data and (self.sftp.stat(path).st_mode or 0) & 0o777 == mode
        except OSError:
            same = False
        if not same:
            self.put(data, path, mode)
        return not same

    def close(self) -> None:
        """End the SFTP channel and the SSH session."""
        self.sftp.close()
        self.ssh.close()


def device_config(d: Device, agent_env: dict[str, str], trust: DeviceTrust) -> dict[str, tuple[bytes, int]]:
    """Every file of the device's config/ (name → contents, mode), made and checked on the operator's
    machine before anything reaches the device."""
    creds = device_credentials(d)
    env = {**agent_env, **d.env, "CITYGRID_EDGE__COMMAND_PUBLIC_KEY": trust.command_public_key,
           "CITYGRID_PATHS__MODELS_DIR": f"{STATE_DIR}/models", "CITYGRID_PATHS__DATA_DIR": STATE_DIR}
    if leaked := sorted(set(env) & NOT_FOR_DEVICES):
        raise DeployError(f"{d.name}: {', '.join(leaked)} must not reach a device (its identity and "
                          "trust come from its enrolment and the deploy)")
    return {
        "agent.env": (env_file(env).encode(), 0o600),
        "device.key": (Path(d.device_key).read_bytes(), 0o600),
        "mqtt-credentials.json": (creds.as_json().encode(), 0o600),
        "mqtt-ca.crt": (trust.broker_ca, 0o644),
        f"{UNIT}.service": (unit_file(d).encode(), 0o644),
    }


def deploy_device(d: Device, archive: bytes, agent_env: dict[str, str], trust: DeviceTrust,
                  known_hosts: Path | None = None, provisioned_site: str | None = None) -> str:
    """Install or upgrade one device; return the release id now current. Rolls back on failure.

    `provisioned_site`: for deps "provisioned", the site-packages directory the operator provisioned on
    the devices (an operator option, never a devices-file value)."""
    d = Device.model_validate(d.model_dump())
    config = device_config(d, agent_env, trust)  # a device not enrolled is refused before any SSH
    site = _provisioned(d, provisioned_site)
    release = hashlib.sha256(archive + d.deps.encode() + d.python.encode() + site.encode()).hexdigest()[:12]
    r = Remote(d, known_hosts)
    root, q = d.root, shlex.quote
    rel = f"{root}/releases/{release}"
    try:
        previous = r.sh(f"readlink {q(root)}/current || true").strip()
        if previous.endswith(f"/{release}"):
            changed = _write_config(r, d, config)
            if changed:  # a rotated password or a new command key acts only once the agent restarts
                _restart(r, d)
            log.info("deploy_up_to_date", device=d.name, release=release, config_changed=changed)
            return release
        r.sh(f"mkdir -p {q(rel)}/src {q(root)}/config {q(root)}/state && chmod 700 {q(root)}/config")
        r.put(archive, f"{rel}/src.tar.gz")
        r.sh(f"tar -xzf {q(rel)}/src.tar.gz -C {q(rel)}/src && rm {q(rel)}/src.tar.gz")
        try:
            _build_venv(r, d, rel, site)
            _write_config(r, d, config)
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


def _provisioned(d: Device, site: str | None) -> str:
    if d.deps != "provisioned":
        return ""
    try:
        return _safe_path(site or "")
    except ValueError:
        raise DeployError(f"{d.name}: deps 'provisioned' needs the operator's provisioned site-packages "
                          "directory (a plain absolute path)") from None


def _build_venv(r: Remote, d: Device, rel: str, site_dir: str) -> None:
    q = shlex.quote
    r.sh(f"{q(d.python)} -m venv {q(rel)}/venv")
    site = r.sh(f"{q(rel)}/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'"
                ).strip()
    # Sorted .pth files: the release's own sources come before any shared site. Each holds one plain
    # path (validated), never an `import` line.
    r.put(f"{rel}/src\n".encode(), f"{site}/00-citygrid-release.pth")
    if d.deps == "provisioned":
        r.sh(f"test -d {q(site_dir)}")
        r.put(f"{site_dir}\n".encode(), f"{site}/zz-provisioned-site.pth")
    else:
        r.sh(f"{q(rel)}/venv/bin/pip install --quiet {' '.join(q(x) for x in EDGE_REQUIREMENTS)}",
             timeout_s=1800)


def _write_config(r: Remote, d: Device, config: dict[str, tuple[bytes, int]]) -> bool:
    """Write the files of config/ that differ (contents or mode); whether any did."""
    changed = False
    for name, (data, mode) in config.items():
        changed |= r.put_if_changed(data, f"{d.root}/config/{name}", mode)
    return changed


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
