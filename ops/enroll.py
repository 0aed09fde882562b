"""Identities on the broker: enrolling and revoking devices, and the services' own identities.

One API for the operator's CLI (`citygrid edge enroll / revoke / rotate`), the local platform and
the tests. It talks to Mosquitto's dynamic-security plugin over MQTT as the broker's administrator
(whose credentials only this tooling reads, from `mqtt.admin_file`), so a change applies at once,
without a broker restart: a revoked device is disconnected and refused from the next attempt on.

Every identity gets one role with exactly the topics it needs and is bound to one client id:
  device     publish {readings}/<district>/<id>; read {commands}/<district>/<id> and {models}/<id>
  ingest     read {readings}/# through the shared subscription $share/<ingest name>/… only; one identity
             per instance (<ingest name>-<k>, `enroll_ingest`), or one under the ingest's name
  advisor    publish {commands}/#
  models     publish {models}/#
  observer   read everything under the three roots (dashboards, debugging, tests)
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from citygrid.errors import CitygridError, ConfigError
from citygrid.mqtt import mqtt_client
from citygrid.settings import CitygridSettings, MqttSettings, read_identity
from citygrid.signing import DeviceRegistry, Enrolment, device_id_for
from citygrid.storage import atomic_write
from citygrid.topics import commands_topic, model_updates_topic, readings_topic, shared_readings_filter

ServiceRole = Literal["ingest", "advisor", "models", "observer"]
SERVICE_ROLES: tuple[ServiceRole, ...] = ("ingest", "advisor", "models", "observer")
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
# What may stand in a topic level and an ACL: no wildcards, separators or control characters.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class EnrolmentError(CitygridError, reason="enrolment"):
    """The broker refused an identity change, or the request itself is invalid."""


@dataclass(frozen=True)
class Credentials:
    """One identity on the broker: username, password and the client id it is bound to."""

    username: str
    password: str = field(repr=False)
    client_id: str

    def apply(self, m: MqttSettings) -> MqttSettings:
        """`m` connecting as this identity."""
        return m.model_copy(update={"username": self.username, "password": self.password,
                                    "client_id": self.client_id})

    def env(self) -> str:
        """The identity as CITYGRID_* lines for a device's or service's environment file."""
        return (f"CITYGRID_MQTT__USERNAME={self.username}\nCITYGRID_MQTT__PASSWORD={self.password}\n"
                f"CITYGRID_MQTT__CLIENT_ID={self.client_id}\n")

    def as_json(self) -> str:
        """The JSON form (`save`, CITYGRID_MQTT__CREDENTIALS_FILE): handle as the secret it is."""
        return json.dumps({"username": self.username, "password": self.password, "client_id": self.client_id})

    def save(self, path: Path) -> None:
        """Write as JSON, readable by the owner only."""
        atomic_write(path, self.as_json(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read a file written by `save`."""
        try:
            return cls(*read_identity(path))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def read(cls, path: Path) -> Credentials:
        """Read either form: the JSON of `save` or the CITYGRID_MQTT__* lines of `env` (what `citygrid edge
        enroll` and `rotate` write for a device)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read MQTT credentials {path}: {exc}") from None
        if text.lstrip().startswith("{"):
            return cls.load(path)
        lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            return cls(*(lines[f"CITYGRID_MQTT__{k}"] for k in ("USERNAME", "PASSWORD", "CLIENT_ID")))
        except (KeyError, TypeError):
            raise ConfigError(f"MQTT credentials {path} lack CITYGRID_MQTT__USERNAME, PASSWORD or CLIENT_ID; "
                              "write them again with `citygrid edge rotate`") from None

    @classmethod
    def new(cls, username: str, client_id: str) -> Credentials:
        """A fresh random password for `username`."""
        return cls(username, secrets.token_urlsafe(32), client_id)


def _acl(kind: str, topic: str) -> dict[str, object]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def _read(topic: str, pattern: bool = False) -> list[dict[str, object]]:
    return [_acl("subscribePattern" if pattern else "subscribeLiteral", topic),
            _acl("publishClientReceive", topic)]


def device_acls(s: CitygridSettings, device_id: str, district: str) -> list[dict[str, object]]:
    """A device publishes only its own readings topic and reads only its own command and model topics."""
    return [_acl("publishClientSend", readings_topic(s.mqtt.readings_topic, district, device_id)),
            *_read(commands_topic(s.mqtt.commands_topic, district, device_id)),
            *_read(model_updates_topic(s.edge.model_updates_topic, device_id))]


def service_acls(s: CitygridSettings, role: ServiceRole) -> list[dict[str, object]]:
    """What each service may do, and nothing more."""
    roots = [s.mqtt.readings_topic, s.mqtt.commands_topic, s.edge.model_updates_topic]
    return {
        # Mosquitto checks a shared subscription's ACL with its $share/<group>/ prefix, and each delivered
        # message's against its topic: the ingest may join its own group and no other subscription.
        "ingest": [_acl("subscribePattern", shared_readings_filter(s.mqtt.readings_topic,
                                                                   s.mqtt.ingest_client_id)),
                   _acl("publishClientReceive", f"{s.mqtt.readings_topic}/#")],
        "advisor": [_acl("publishClientSend", f"{s.mqtt.commands_topic}/#")],
        "models": [_acl("publishClientSend", f"{s.edge.model_updates_topic}/#")],
        "observer": [a for root in roots for a in _read(f"{root}/#", pattern=True)],
    }[role]


class BrokerAdmin:
    """A connection to the broker as its administrator, sending dynamic-security commands."""

    def __init__(self, m: MqttSettings, timeout_s: float = 10.0) -> None:
        if m.admin_file is None or not Path(m.admin_file).exists():
            raise ConfigError(f"broker admin credentials {m.admin_file} not found "
                              "(set CITYGRID_MQTT__ADMIN_FILE)")
        admin = Credentials.load(m.admin_file)
        self.timeout_s = timeout_s
        self._responses: dict[str, dict] = {}
        self._cond = threading.Condition()
        cfg = admin.apply(m).model_copy(update={"client_id": f"{admin.client_id}-{uuid.uuid4().hex[:8]}"})
        self.client = mqtt_client(cfg, cfg.client_id, clean_session=True)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: (
            c.subscribe(f"{CONTROL_TOPIC}/response", qos=1) if not rc.is_failure else None)
        try:
            self.client.connect(m.host, m.port, keepalive=30)
        except OSError as exc:
            raise EnrolmentError(f"cannot reach the broker {m.host}:{m.port}: {exc}") from exc
        self.client.loop_start()
        if not subscribed.wait(timeout_s):
            self.close()
            raise EnrolmentError("the broker refused the administrator or did not answer")

    def _on_message(self, client, userdata, msg) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._cond:
            for r in responses:
                if isinstance(r, dict) and "correlationData" in r:
                    self._responses[r["correlationData"]] = r
            self._cond.notify_all()

    def run(self, commands: list[dict], ignore: tuple[str, ...] = ()) -> list[dict]:
        """Send `commands` in one message; return their responses, raising on an error whose text
        does not contain one of `ignore` (e.g. "not found" when deleting what may not exist)."""
        ids = [uuid.uuid4().hex for _ in commands]
        payload = {"commands": [{**c, "correlationData": i} for c, i in zip(commands, ids, strict=True)]}
        self.client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while not all(i in self._responses for i in ids):
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise EnrolmentError("the broker did not answer the dynamic-security commands")
            out = [self._responses.pop(i) for i in ids]
        for cmd, r in zip(commands, out, strict=True):
            err = r.get("error")
            if err and not any(word in err for word in ignore):
                raise EnrolmentError(f"broker refused {cmd['command']}: {err}")
        return out

    def put_identity(self, creds: Credentials, role: str, acls: list[dict], text: str) -> None:
        """Create (or replace) a client with its own role of `acls`, bound to its client id."""
        self.run([{"command": "deleteClient", "username": creds.username},
                  {"command": "deleteRole", "rolename": role}], ignore=("not found",))
        self.run([
            {"command": "createRole", "rolename": role, "acls": acls},
            {"command": "createClient", "username": creds.username, "password": creds.password,
             "clientid": creds.client_id, "textname": text, "roles": [{"rolename": role, "priority": 0}]},
        ])

    def drop_identity(self, username: str, role: str) -> None:
        """Delete a client (the broker disconnects it at once) and its role."""
        self.run([{"command": "deleteClient", "username": username},
                  {"command": "deleteRole", "rolename": role}], ignore=("not found",))

    def set_password(self, username: str, password: str) -> None:
        """Replace a client's password; its open connection is dropped and must log in anew."""
        self.run([{"command": "setClientPassword", "username": username, "password": password}])

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> BrokerAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise EnrolmentError(f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def device_client_id(device_id: str) -> str:
    """The one client id a device may connect under."""
    return f"edge-{device_id}"


def enroll_device(s: CitygridSettings, public_key: bytes, kind: str, district: str,
                  owner: str) -> Credentials:
    """Enrol a device: registry entry (kind, district, owner) and its broker identity and ACL.
    Re-enrolling replaces the broker password and lifts a revocation."""
    device_id = device_id_for(public_key)
    _name(kind, "kind"), _name(district, "district"), _name(owner, "owner")
    creds = Credentials.new(device_id, device_client_id(device_id))
    with BrokerAdmin(s.mqtt) as admin:
        admin.put_identity(creds, f"device-{device_id}", device_acls(s, device_id, district),
                           f"{kind} in {district}, owner {owner}")
    registry = DeviceRegistry.load(s.paths.device_registry)
    registry.add(public_key, kind=kind, district=district, owner=owner)
    registry.save(s.paths.device_registry)
    return creds


def revoke_device(s: CitygridSettings, device_id: str) -> Enrolment:
    """Revoke a device: the broker drops and refuses it at once; the registry marks it revoked (the
    ingest then dead-letters its readings as `revoked`) and keeps its key for older proofs."""
    registry = DeviceRegistry.load(s.paths.device_registry)
    registry.enrolment(device_id)  # UnknownDevice before touching the broker
    with BrokerAdmin(s.mqtt) as admin:
        admin.drop_identity(device_id, f"device-{device_id}")
    entry = registry.revoke(device_id, int(time.time() * 1000))
    registry.save(s.paths.device_registry)
    return entry


def rotate_device(s: CitygridSettings, device_id: str) -> Credentials:
    """A new broker password for an enrolled, unrevoked device (its reading key stays)."""
    entry = DeviceRegistry.load(s.paths.device_registry).enrolment(device_id)
    if entry.revoked:
        raise EnrolmentError(f"device {device_id} is revoked; enrol a new key instead")
    creds = Credentials.new(device_id, device_client_id(device_id))
    with BrokerAdmin(s.mqtt) as admin:
        admin.set_password(device_id, creds.password)
    return creds


def enroll_service(s: CitygridSettings, role: ServiceRole, name: str | None = None) -> Credentials:
    """A service's identity (`name`, default the ingest's client id or citygrid-<role>), bound to
    one client id of the same name, with only its role's topics."""
    username = _name(name or (s.mqtt.ingest_client_id if role == "ingest" else f"citygrid-{role}"), "name")
    creds = Credentials.new(username, username)
    with BrokerAdmin(s.mqtt) as admin:
        admin.put_identity(creds, f"service-{username}", service_acls(s, role), f"citygrid {role}")
    return creds


def ingest_instance(s: CitygridSettings, k: int) -> str:
    """The name (username and client id) of the ingest's instance `k`: the chart's StatefulSet pod k."""
    return f"{s.mqtt.ingest_client_id}-{k}"


def enroll_ingest(s: CitygridSettings, instances: int) -> list[Credentials]:
    """One identity per ingest instance, each bound to its own client id, so every instance keeps its own
    persistent session in the shared subscription across restarts and none can take another's."""
    return [enroll_service(s, "ingest", ingest_instance(s, k)) for k in range(instances)]
