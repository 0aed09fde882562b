"""`citygrid traffic advisor`: the closed loop's stream-side process."""

from __future__ import annotations

import typer

from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings

app = typer.Typer()


@app.command()
def advisor() -> None:
    """Consume traffic readings from Kafka and publish signal advice to each intersection over MQTT."""
    from citygrid.stream.traffic.advisor import TrafficAdvisor

    s = get_settings()
    serve_metrics(s.metrics_port)
    TrafficAdvisor(s).run(stop_event_on_signals())
