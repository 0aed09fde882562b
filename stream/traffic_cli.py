"""`citygrid traffic …`: the closed loop's advisor process and its evaluation against SUMO's own control."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citygrid.lifecycle import stop_event_on_signals
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings

app = typer.Typer(help="Traffic closed loop: signal advice from forecast flows.", no_args_is_help=True)
console = Console()
REPO = Path(__file__).resolve().parents[1]


@app.command()
def advisor() -> None:
    """Consume traffic readings from Kafka and publish signal advice to each intersection over MQTT."""
    from citygrid.stream.traffic_loop import TrafficAdvisor

    s = get_settings()
    serve_metrics(s.metrics_port)
    TrafficAdvisor(s).run(stop_event_on_signals())


@app.command()
def evaluate(seeds: int = typer.Option(5, help="Scenario seeds (1..N), each run under every control."),
             hours: float = typer.Option(2.0, help="Simulated hours of the morning-peak scenario."),
             workers: int = typer.Option(2, help="SUMO runs in parallel."),
             cache: Path = typer.Option(REPO / ".cache", help="Where SUMO scenarios are cached."),
             report: Path = typer.Option(REPO / "reports" / "traffic_evaluation.md", help="Markdown report.")
             ) -> None:
    """Fixed time vs SUMO's actuated lights vs citygrid's advice on the same scenario and seeds."""
    from citygrid.stream.traffic_evaluation import MODES, write_report
    from citygrid.stream.traffic_evaluation import evaluate as run_evaluation

    result = run_evaluation(cache, list(range(1, seeds + 1)), hours, get_settings(), workers)
    table = Table("control", "mean waiting (s)", "mean travel (s)", "throughput (veh/h)",
                  title=f"{seeds} seeds, {hours} h, mean ± std over seeds")
    s = result["summary"]
    for mode in MODES:
        table.add_row(mode, *(f"{s[mode][m]['mean']:.2f} ± {s[mode][m]['std']:.2f}"
                              for m in ("mean_waiting_s", "mean_travel_s", "throughput_veh_h")))
    console.print(table)
    red = s["waiting_reduction"]
    console.print(f"waiting time vs fixed: {red['fixed']:+.1%} lower (target 30%); "
                  f"vs actuated: {red['actuated']:+.1%} lower (target 15%)")
    write_report(result, report)
    console.print(f"report: {report} (+ .json)")
