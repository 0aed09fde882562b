"""The `citygrid` command: one subcommand group per part of the platform."""

from __future__ import annotations

import importlib

import typer
from rich.console import Console
from rich.table import Table

from citygrid import local_servers
from citygrid.observability import configure_logging
from citygrid.settings import get_settings

app = typer.Typer(help="citygrid: signed IoT readings from edge to ledger.", no_args_is_help=True)
servers = typer.Typer(help="The local real servers: Mosquitto, Kafka, the dev chain.",
                      no_args_is_help=True)
app.add_typer(servers, name="servers")
console = Console()


@app.callback()
def _main(log_level: str = typer.Option("INFO", help="Log level."),
          json_logs: bool = typer.Option(False, help="Logs as JSON lines.")) -> None:
    configure_logging(log_level, json_logs)


@servers.command("up")
def servers_up(only: list[str] = typer.Option(None, help="mosquitto, kafka or chain")) -> None:
    """Start the local servers (those already running are reused)."""
    started = local_servers.up(get_settings(), only or None)
    console.print(f"started: {', '.join(started) or 'none (all were running)'}")


@servers.command("down")
def servers_down(only: list[str] = typer.Option(None, help="mosquitto, kafka or chain")) -> None:
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
    from citygrid.demo import run_demo

    raise typer.Exit(run_demo(get_settings(), devices, steps, keep_servers, console))


# Each part's commands load only where its extra is installed (a device has only [edge]).
for _name, _module_name, _extra in (
    ("edge", "citygrid.edge.cli", "edge"), ("stream", "citygrid.stream.cli", "stream"),
    ("ledger", "citygrid.ledger.cli", "ledger"), ("dashboards", "citygrid.dashboards.cli", "ops"),
    ("traffic", "citygrid.stream.traffic_cli", "stream,sim"),
):
    try:
        _module = importlib.import_module(_module_name)
    except ImportError as _exc:
        app.add_typer(typer.Typer(help=f"(needs `pip install citygrid[{_extra}]`: {_exc.name} missing)"),
                      name=_name)
    else:
        app.add_typer(_module.app, name=_name)
