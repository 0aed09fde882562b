"""`citygrid servers …` and `citygrid demo`: the local platform for development and evaluation."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from citygrid.devtools import local_servers
from citygrid.settings import get_settings

app = typer.Typer()
servers = typer.Typer()
console = Console()


@servers.command("up")
def servers_up(only: list[str] = typer.Option(None, help="mosquitto, kafka, chain or prometheus")) -> None:
    """Start the local servers (those already running are reused)."""
    started = local_servers.up(get_settings(), only or None)
    console.print(f"started: {', '.join(started) or 'none (all were running)'}")


@servers.command("down")
def servers_down(only: list[str] = typer.Option(None, help="mosquitto, kafka, chain or prometheus")) -> None:
    """Stop the local servers."""
    local_servers.down(get_settings(), only or None)


@servers.command("status")
def servers_status() -> None:
    """Which local servers answer."""
    table = Table("server", "up")
    for name, ok in local_servers.status(get_settings()).items():
        table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]")
    console.print(table)


@app.command()
def demo(devices: int = typer.Option(6, help="Simulated meters and PV inverters."),
         steps: int = typer.Option(16, help="15-minute steps each device replays."),
         keep_servers: bool = typer.Option(False, help="Leave the servers running.")) -> None:
    """Run the local platform end to end on real SimBench profiles and report what happened."""
    from citygrid.devtools.demo import run_demo

    raise typer.Exit(run_demo(get_settings(), devices, steps, keep_servers, console))
