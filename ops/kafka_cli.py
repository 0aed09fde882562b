"""`citygrid kafka grant`: make the services' principals and ACLs on a Kafka cluster (the chart's
setup Job runs it with the admin principal)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from citygrid.settings import get_settings

app = typer.Typer()
console = Console()


@app.command()
def grant(principals: Path = typer.Option(
        None, help="The services' passwords: a directory with one file per principal (a mounted "
        "Secret), or a JSON file {principal: password}.")) -> None:
    """Set the services' SCRAM credentials (if given) and create every ACL they need."""
    from citygrid.ops.kafka_access import apply, ensure_principals
    from citygrid.stream.kafka_topics import ensure_topics
    from citygrid.topics import dead_letters_topic, stream_output_topics

    s = get_settings()
    if principals is not None:
        if principals.is_dir():
            passwords = {f.name: f.read_text().strip() for f in sorted(principals.iterdir())
                         if f.is_file() and not f.name.startswith(".")}
        else:
            passwords = json.loads(principals.read_text())
        # The admin principal exists from the brokers' start; it is not changed from here.
        passwords.pop("admin", None)
        ensure_principals(s, passwords)
    k = s.kafka
    # Created here, as the admin: a service may write its topics but need not be allowed to create them.
    ensure_topics(k, [*stream_output_topics(s), k.orders_topic, k.trades_topic,
                      *(dead_letters_topic(t, p) for t, p in ((k.readings_topic, "anchorer"),
                                                              (k.trades_topic, "settler")))])
    console.print(f"{apply(s)} ACLs in place for {k.bootstrap}")
