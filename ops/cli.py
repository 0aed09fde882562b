"""`citygrid edge deploy`: the operator's command that installs agents on devices."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from citygrid.settings import get_settings

edge = typer.Typer()
console = Console()


@edge.command()
def deploy(devices: Path = typer.Argument(..., help="YAML: a `devices:` list (see citygrid.ops.deploy)."),
           known_hosts: Path = typer.Option(None, help="known_hosts file with the devices' host keys."),
           ) -> None:
    """Install or upgrade the agent on every listed device over SSH; a failed device is rolled back."""
    import yaml

    from citygrid.ops.deploy import DeployError, Device, agent_env, deploy_device, release_archive

    s = get_settings()
    spec = yaml.safe_load(devices.read_text())
    archive = release_archive()
    failed = 0
    for entry in spec["devices"]:
        d = Device(**{**spec.get("defaults", {}), **entry})
        try:
            console.print(f"{d.name}: release {deploy_device(d, archive, agent_env(s), known_hosts)}")
        except DeployError as exc:
            failed += 1
            console.print(f"[red]{d.name}: {exc}[/]")
    raise typer.Exit(1 if failed else 0)
