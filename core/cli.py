"""The `citygrid` command: one subcommand group per part of the platform.

The parts' commands are found by module name and loaded only where their extra
is installed (a device has only [edge]), so core imports none of the parts.
A group may collect commands from several modules: `citygrid edge run` is the
device runtime, `citygrid edge deploy` the operator's tool, `citygrid edge
train` the simulator's.
"""

from __future__ import annotations

import importlib

import typer

from citygrid.observability import configure_logging

app = typer.Typer(help="citygrid: signed IoT readings from edge to ledger.", no_args_is_help=True)

# group → (help, [(module, its Typer attribute, the extra it needs)]); "" puts commands at the top level.
GROUPS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "": ("", [("citygrid.devtools.cli", "app", "stream,ledger,sim")]),
    "servers": ("The local real servers: Mosquitto, Kafka, the dev chain, Prometheus.",
                [("citygrid.devtools.cli", "servers", "stream,ledger,sim")]),
    "edge": ("Edge devices: keys, the agent, models, deployment.",
             [("citygrid.edge.cli", "app", "edge"), ("citygrid.sim.cli", "edge", "sim"),
              ("citygrid.ops.cli", "edge", "ops")]),
    "stream": ("Stream layer: MQTT→Kafka ingest, Faust workers.",
               [("citygrid.stream.cli", "app", "stream"), ("citygrid.sim.cli", "stream", "sim")]),
    "traffic": ("Traffic closed loop: signal advice from forecast flows.",
                [("citygrid.stream.traffic.cli", "app", "stream"), ("citygrid.sim.cli", "traffic", "sim")]),
    "ledger": ("Ledger: anchoring, proofs, settlement.", [("citygrid.ledger.cli", "app", "ledger")]),
    "market": ("The energy market: participants, signed bids, audit.",
               [("citygrid.stream.market.cli", "app", "stream"), ("citygrid.ops.market_cli", "app", "ops")]),
    "dashboards": ("Grafana dashboards as code.", [("citygrid.dashboards.cli", "app", "ops")]),
    "kafka": ("Kafka principals and ACLs.", [("citygrid.ops.kafka_cli", "app", "ledger")]),
}


@app.callback()
def _main(log_level: str = typer.Option("INFO", help="Log level."),
          json_logs: bool = typer.Option(False, help="Logs as JSON lines.")) -> None:
    configure_logging(log_level, json_logs)


def _load(module_name: str, attr: str) -> typer.Typer | str:
    """The module's Typer, or the name of the missing package that keeps it from importing."""
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        return exc.name or module_name


def _build() -> None:
    for group, (help_text, sources) in GROUPS.items():
        target = app if not group else typer.Typer(help=help_text, no_args_is_help=True)
        missing = []
        for module_name, attr, extra in sources:
            loaded = _load(module_name, attr)
            if isinstance(loaded, str):
                missing.append(f"`pip install citygrid[{extra}]` for more: {loaded} missing")
                continue
            target.registered_commands.extend(loaded.registered_commands)
            target.registered_groups.extend(loaded.registered_groups)
        if group:
            if missing:
                target.info.help = f"{help_text} ({'; '.join(missing)})"
            app.add_typer(target, name=group)


_build()
