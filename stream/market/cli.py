"""`citygrid market enrol / bid`: enrolling a participant, and the participant's own bidding agent."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from citygrid.errors import CitygridError
from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings

app = typer.Typer(help="The energy market: participants, signed bids, audit.", no_args_is_help=True)
console = Console()


@app.command()
def enrol(name: str = typer.Argument(..., help="The participant's name (letters, digits, _ . -)."),
          address: str = typer.Option(..., help="Its chain account (SS58): where it pays and is paid."),
          key_file: Path = typer.Option(..., "--key-file", help="Its order key file: created (0600) if "
                                        "missing; hand it to the participant's bidder only."),
          bus: str = typer.Option(None, help="The grid bus it is connected at."),
          device: list[str] = typer.Option([], "--device", help="A device it owns (repeat)."),
          buy_limit: int = typer.Option(0, help="Most it pays per Wh (planck)."),
          sell_limit: int = typer.Option(0, help="Least it accepts per Wh (planck).")) -> None:
    """Enrol (or re-enrol) a participant in the registry, with an order key of its own."""
    from citygrid.participants import Participant, Participants
    from citygrid.signing import DeviceKey

    s = get_settings()
    try:
        key = DeviceKey.load(key_file) if key_file.exists() else DeviceKey.generate()
        entry = Participant(address=address, order_key=key.public_key.hex(), bus=bus, devices=tuple(device),
                            buy_limit=buy_limit, sell_limit=sell_limit)
        registry = Participants.load(s.paths.participants).with_entry(name, entry)
        if not key_file.exists():
            key.save(key_file)
        registry.save(s.paths.participants)
    except (CitygridError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"enrolled {name} ({address}) with order key {key.public_key.hex()[:16]}… in "
                  f"{s.paths.participants}; its key file is {key_file}")


@app.command()
def bid(participant: str = typer.Option(..., "--participant", help="Whose bidder this is."),
        key_file: Path = typer.Option(..., "--key-file", help="That participant's order key file.")) -> None:
    """Run a participant's bidder: its devices' forecasts become its signed orders, until stopped."""
    from citygrid.participants import Participants
    from citygrid.stream.market.bidder import Bidder, load_order_key

    s = get_settings()
    serve_metrics(s.metrics_port)
    try:
        key = load_order_key(Participants.load(s.paths.participants), participant, key_file)
        Bidder(s, participant, key).run(s, stop_event_on_signals())
    except CitygridError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
