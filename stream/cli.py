"""`citygrid stream …`: the ingest and the Faust worker."""

from __future__ import annotations

import typer

from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings

app = typer.Typer(help="Stream layer: MQTT→Kafka ingest, Faust workers.", no_args_is_help=True)


@app.command()
def topics() -> None:
    """Create the Kafka topics if missing."""
    from citygrid.stream.topics import ensure_topics

    s = get_settings()
    ensure_topics(s.kafka, [s.kafka.readings_topic, s.kafka.dead_letter_topic, s.kafka.stats_topic,
                            s.stream.forecasts_topic, s.stream.alerts_topic])


@app.command()
def ingest() -> None:
    """Verify readings from MQTT and write them to Kafka until stopped."""
    from citygrid.stream.ingest import Ingest
    from citygrid.stream.topics import ensure_topics

    s = get_settings()
    serve_metrics(s.metrics_port)
    ensure_topics(s.kafka)
    Ingest(s).run(stop_event_on_signals())


@app.command()
def worker() -> None:
    """Run a Faust worker of the stream app."""
    import faust

    from citygrid.stream.app import make_app
    from citygrid.stream.topics import ensure_topics

    s = get_settings()
    serve_metrics(s.metrics_port)
    ensure_topics(s.kafka, [s.kafka.readings_topic, s.kafka.stats_topic, s.stream.forecasts_topic,
                            s.stream.alerts_topic])
    faust.Worker(make_app(s), loglevel="WARNING", quiet=True).execute_from_commandline()


@app.command()
def evaluate(out_dir: str = typer.Option("reports", help="Folder for prequential.md and .json."),
             days: int = typer.Option(0, help="Energy days to replay (0 = the whole year)."),
             traffic: bool = typer.Option(True, help="Include SUMO induction-loop counts.")) -> None:
    """Evaluate the forecasters prequentially on SimBench and SUMO data; write the report."""
    from pathlib import Path

    from citygrid.local_servers import repo_root
    from citygrid.stream.evaluation import energy_results, traffic_results, write_report

    s = get_settings().stream
    cache = repo_root() / ".cache"
    notes = [f"Energy: SimBench grid profiles, {'a full year' if not days else f'{days} days'} at "
             f"{s.energy_step_s // 60} min; seasonal-naive = same quarter-hour one day earlier."]
    rows = energy_results(cache, s, days or None)
    if traffic:
        rows += traffic_results(cache, s)
        notes.append(f"Traffic: SUMO induction loops (seed 1, 2 h, {s.traffic_step_s} s counts); "
                     f"seasonal-naive = {s.traffic_season_steps} intervals earlier; intersections sum "
                     "the loops on the lanes entering them.")
    md = write_report(rows, Path(out_dir), s, notes)
    typer.echo(md.read_text().split("## Every series")[0])
    typer.echo(f"written: {md} and {md.with_suffix('.json')}")
