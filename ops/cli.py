"""The operator's device commands: `citygrid edge deploy` installs agents; `enroll`, `revoke` and `rotate`
manage each device's identity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from citygrid.settings import get_settings

if TYPE_CHECKING:
    from citygrid.ops.release import Release

edge = typer.Typer()
console = Console()


@edge.command()
def deploy(devices: Path = typer.Argument(..., help="YAML: a `devices:` list (see citygrid.ops.deploy)."),
           known_hosts: Path = typer.Option(None, help="known_hosts file with the devices' host keys."),
           wheel: Path = typer.Option(None, help="The citygrid wheel to install (default: built from this "
                                      "checkout)."),
           model: Path = typer.Option(None, help="An ONNX model the release ships, made current on its "
                                      "first start (from `citygrid edge train`)."),
           wait_s: float = typer.Option(180.0, help="How long each device has for its first reading to "
                                        "reach Kafka before it is rolled back; 0: do not wait."),
           batch_size: int = typer.Option(4, min=1, help="Devices deployed in parallel after the canary."),
           provisioned_site: str = typer.Option(None, help="For devices with deps: provisioned, the "
                                                "site-packages directory provisioned on them."),
           ) -> None:
    """Install or upgrade the agent on every listed device over SSH, the first device as the canary,
    then the rest in parallel batches; each is proven by its first signed reading in Kafka, or rolled
    back.

    Each device gets its own broker identity (the credentials `citygrid edge enroll` wrote beside its
    key), the broker's CA (CITYGRID_MQTT__CA_FILE) and the command public key it trusts
    (CITYGRID_EDGE__COMMAND_PUBLIC_KEY, or the public half of CITYGRID_TRAFFIC__COMMAND_KEY_FILE)."""
    from functools import partial

    from citygrid.errors import CitygridError
    from citygrid.ops.deploy import deploy_device
    from citygrid.ops.device_config import DeviceTrust, agent_env, load_devices
    from citygrid.ops.first_reading import FirstReadingGate
    from citygrid.ops.rollout import roll_out

    s = get_settings()
    try:
        fleet, trust, release = load_devices(devices), DeviceTrust.from_settings(s), _release(wheel, model)
    except CitygridError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    gate = FirstReadingGate(s.kafka, wait_s) if wait_s > 0 else None
    run = partial(deploy_device, release=release, agent_env=agent_env(s), trust=trust,
                  known_hosts=known_hosts, provisioned_site=provisioned_site, gate=gate)
    result = roll_out(fleet, run, batch_size, on_result=_print_deployed)
    for name in result.skipped:
        console.print(f"{name}: not deployed (the rollout stopped after a failed batch)")
    raise typer.Exit(0 if result.ok else 1)


def _release(wheel: Path | None, model: Path | None) -> Release:
    from citygrid.ops.errors import ReleaseError
    from citygrid.ops.release import Release, build_wheel, project_root

    if wheel is None:
        project = project_root()
        if project is None:
            raise ReleaseError("citygrid runs from an installed wheel here: pass --wheel citygrid-….whl")
        with console.status(f"building the wheel of {project}…"):
            wheel = build_wheel(project)
    return Release.from_files(wheel, model)


def _print_deployed(d: object, result: object) -> None:
    from citygrid.ops.deploy import Deployed

    if not isinstance(result, Deployed):
        console.print(f"[red]{result}[/]")
        return
    how = {"systemd": "restarted by systemd",
           "run-unit": "started like its unit by run-unit.py (no systemd on the device: no sandbox)",
           None: "not restarted"}[result.started_by]
    proof = (f"; first reading in Kafka after {result.first_reading_s:.1f} s"
             if result.first_reading_s is not None else "")
    was = result.previous or "none"
    console.print(f"{result.device}: release {result.release} (was {was}); {how}{proof}")


@edge.command()
def status(devices: Path = typer.Argument(..., help="YAML: the `devices:` list deployed to."),
           known_hosts: Path = typer.Option(None, help="known_hosts file with the devices' host keys."),
           ) -> None:
    """Each device's release, the model its last reading carries, and how old that reading is."""
    from rich.table import Table

    from citygrid.ops.device_config import load_devices
    from citygrid.ops.status import device_status, last_readings

    s = get_settings()
    readings = last_readings(s.kafka)
    table = Table("device", "id", "release", "release model", "agent", "last reading", "scored by")
    for d in load_devices(devices):
        st = device_status(d, known_hosts, readings)
        age = st.age_s()
        table.add_row(st.name, st.device_id, st.release or "-", st.release_model or "-", st.agent,
                      f"seq {st.last_seq}, {age:.0f} s ago" if age is not None else "none in Kafka",
                      st.model or "-")
    console.print(table)


@edge.command()
def enroll(key: Path = typer.Argument(..., help="The device's key file (made here if missing, 0600)."),
           kind: str = typer.Option(..., help="What the device measures: meter, pv, traffic, …"),
           district: str = typer.Option(..., help="Its feeder or intersection group."),
           owner: str = typer.Option(..., help="Who operates it."),
           credentials: Path = typer.Option(None, help="Where to write its broker credentials "
                                            "(CITYGRID_MQTT__* lines, 0600); default KEY.mqtt.env."),
           ) -> None:
    """Enrol a device: its key, its registry entry (kind, district, owner) and its broker identity,
    which may publish only its own readings topic and read only its own command and model topics."""
    from citygrid.ops.enroll import enroll_device
    from citygrid.signing import DeviceKey
    from citygrid.storage import atomic_write

    s = get_settings()
    if key.exists():
        device = DeviceKey.load(key)
    else:
        device = DeviceKey.generate()
        device.save(key)
    creds = enroll_device(s, device.public_key, kind, district, owner)
    out = credentials or key.with_name(key.name + ".mqtt.env")
    atomic_write(out, creds.env(), mode=0o600)
    console.print(f"enrolled {device.device_id} ({kind} in {district}, owner {owner}); credentials in {out}")


@edge.command()
def revoke(device_id: str = typer.Argument(..., help="The device id (d…).")) -> None:
    """Revoke a device: the broker drops and refuses it at once; the ingest dead-letters its readings as
    `revoked`; its key stays in the registry so readings anchored before still verify."""
    from citygrid.ops.enroll import revoke_device

    entry = revoke_device(get_settings(), device_id)
    console.print(f"revoked {device_id} at {entry.revoked_at_ms} ms")


@edge.command()
def rotate(device_id: str = typer.Argument(..., help="The device id (d…)."),
           credentials: Path = typer.Option(..., help="Where to write the new broker credentials (0600)."),
           ) -> None:
    """Give an enrolled device a new broker password (its open connection drops; its key stays)."""
    from citygrid.ops.enroll import rotate_device
    from citygrid.storage import atomic_write

    atomic_write(credentials, rotate_device(get_settings(), device_id).env(), mode=0o600)
    console.print(f"new broker credentials for {device_id} in {credentials}")


@edge.command()
def service(role: str = typer.Argument(..., help="ingest, advisor, models or observer."),
            credentials: Path = typer.Option(..., help="Where to write its credentials (JSON, 0600)."),
            name: str = typer.Option(None, help="Its username and client id (default: the ingest's client "
                                     "id, or citygrid-ROLE)."),
            ) -> None:
    """Create (or replace, with a new password) a service's broker identity, limited to its role's topics."""
    from citygrid.ops.enroll import SERVICE_ROLES, enroll_service

    if role not in SERVICE_ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(SERVICE_ROLES)}")
    creds = enroll_service(get_settings(), role, name)  # type: ignore[arg-type]
    creds.save(credentials)
    console.print(f"{role} identity {creds.username} (client id {creds.client_id}); "
                  f"credentials in {credentials}")


@edge.command("command-key")
def command_key(out: Path = typer.Argument(..., help="Where the command authority's key lives (made here "
                                            "if missing, 0600).")) -> None:
    """Make (or read) the command authority's key; print its public half, what devices trust
    (CITYGRID_EDGE__COMMAND_PUBLIC_KEY, the chart's commands.publicKey). Never registered as a device."""
    from citygrid.signing import DeviceKey

    if out.exists():
        key = DeviceKey.load(out)
    else:
        key = DeviceKey.generate()
        key.save(out)
    console.print(key.public_key.hex())


@edge.command("publish-model")
def publish_model(model: Path = typer.Argument(..., help="The ONNX model (from `citygrid edge train`)."),
                  device: list[str] = typer.Option(..., "--device", help="A target device id; repeat for "
                                                   "each. Only these devices get (and accept) it."),
                  serial: int = typer.Option(None, help="Must exceed the serial a device runs; default: "
                                             "now, in seconds since the epoch."),
                  ttl_days: float = typer.Option(7.0, help="How long a device may still install it."),
                  command_key: Path = typer.Option(None, help="The command authority's key file "
                                                   "(default CITYGRID_TRAFFIC__COMMAND_KEY_FILE)."),
                  credentials: Path = typer.Option(None, help="The models service's broker credentials "
                                                   "(JSON from `citygrid edge service models`); default: "
                                                   "the settings' identity."),
                  ) -> None:
    """Sign a model update for each named device and publish it retained on its model topic."""
    from citygrid.errors import CitygridError
    from citygrid.ops.enroll import Credentials
    from citygrid.ops.model_release import publish_model as release
    from citygrid.signing import DeviceKey

    s = get_settings()
    key_file = command_key or s.traffic.command_key_file
    if key_file is None:
        raise typer.BadParameter("give --command-key or set CITYGRID_TRAFFIC__COMMAND_KEY_FILE")
    if credentials is not None:
        s = s.model_copy(update={"mqtt": Credentials.load(credentials).apply(s.mqtt)})
    try:
        r = release(s, model, device, DeviceKey.load(key_file), serial, ttl_days * 86400)
    except CitygridError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"published {r.name} {r.version} (serial {r.serial}, {r.size} B, sha256 {r.sha256[:16]}…) "
                  f"retained to {len(r.devices)} device(s): {', '.join(r.devices)}")
