"""`citygrid edge …`: device keys and simulated devices."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from citygrid.edge.fleet import provision, replay_fleet
from citygrid.local_servers import repo_root
from citygrid.settings import get_settings
from citygrid.signing import DeviceKey, DeviceRegistry

app = typer.Typer(help="Edge devices: keys, simulated replay.", no_args_is_help=True)
console = Console()


@app.command()
def keygen(out: Path = typer.Argument(..., help="Where to write the device's secret key.")) -> None:
    """Create a device key and register its public key; prints the device id."""
    s = get_settings()
    key = DeviceKey.generate()
    key.save(out)
    registry = DeviceRegistry.load(s.device_registry)
    registry.add(key.public_key)
    registry.save(s.device_registry)
    console.print(key.device_id)


@app.command()
def replay(devices: int = typer.Option(6, help="How many simulated devices."),
           steps: int = typer.Option(16, help="Quarter-hours each replays.")) -> None:
    """Replay SimBench load and PV profiles from simulated, signed devices over MQTT."""
    s = get_settings()
    fleet = provision(s.data_dir, s.device_registry, repo_root() / ".cache", devices)
    sent = replay_fleet(s, fleet, steps)
    console.print(f"{sent} readings published from {len(fleet)} devices")
