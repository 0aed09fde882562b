"""What a device gets besides its release: its settings, key, broker identity, the broker's CA, and the
systemd unit that runs its agent, all made and checked on the operator's machine.

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
identity and local paths never reach a device (`agent_env`).

Every value of the devices file is validated (`Device`, strict patterns) before
anything is written, so none can add a line to the unit or the environment file,
override the agent's trusted command key or paths, or add code to the agent's
interpreter: the interpreter must be a system python3, and a pre-provisioned
site-packages directory (deps "provisioned") is the operator's own deploy option
(`deploy_device(provisioned_site=…)`), never a devices-file value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from citygrid.errors import ConfigError
from citygrid.ops import unit_runner
from citygrid.ops.enroll import Credentials
from citygrid.ops.errors import DeployError
from citygrid.ops.remote import UNIT
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey

# Safe absolute paths: no spaces, quotes, specifiers (%), variables ($), newlines or "..".
SAFE_PATH = r"/[A-Za-z0-9._/+-]{1,200}"


def safe_path(path: str) -> str:
    """`path` if it is a plain absolute path (ValueError otherwise)."""
    if not re.fullmatch(SAFE_PATH, path) or ".." in path.split("/"):
        raise ValueError("must be a plain absolute path (letters, digits, . _ / + -), without ..")
    return path


SafePath = Annotated[str, AfterValidator(safe_path)]
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
    # "pip" installs the wheel with its [edge] extra from the package index; "provisioned" uses the
    # operator's pre-provisioned site-packages
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


def load_devices(path: Path) -> list[Device]:
    """The devices of a devices file (`defaults:` merged into each of `devices:`), each one checked."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict) or not isinstance(spec.get("devices"), list):
        raise DeployError(f"{path}: expected a `devices:` list (and optionally `defaults:`)")
    return [Device.parse({**spec.get("defaults", {}), **entry}) for entry in spec["devices"]]


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
        f"--outbox {STATE_DIR}/outbox.db --modbus {d.modbus} --district {d.district} --with-models "
        f"--release-model {d.root}/current/model.onnx",
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
        "run-unit.py": (Path(unit_runner.__file__).read_bytes(), 0o644),
    }
