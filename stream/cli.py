"""`citygrid stream …`: the ingest and the Faust worker."""

from __future__ import annotations

import typer

from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings
from citygrid.topics import stream_output_topics, worker_output_topics

app = typer.Typer()


@app.command()
def topics() -> None:
    """Create the Kafka topics if missing."""
    from citygrid.stream.kafka_topics import ensure_topics

    s = get_settings()
    ensure_topics(s.kafka, stream_output_topics(s))


@app.command()
def ingest() -> None:
    """Verify readings from MQTT and write them to Kafka until stopped."""
    from citygrid.stream.ingest import Ingest
    from citygrid.stream.kafka_topics import ensure_topics

    s = get_settings()
    serve_metrics(s.metrics_port)
    ensure_topics(s.kafka)
    Ingest(s).run(stop_event_on_signals())


@app.command()
def worker() -> None:
    """Run a Faust worker of the stream app."""
    import faust

    from citygrid.stream.app import make_app
    from citygrid.stream.kafka_topics import ensure_topics

    s = get_settings()
    serve_metrics(s.metrics_port)
    ensure_topics(s.kafka, worker_output_topics(s))
    faust.Worker(make_app(s), loglevel="WARNING", quiet=True).execute_from_commandline()
