"""The simulators' commands, in the groups they serve: `citygrid edge replay / simulate / train`,
`citygrid stream evaluate` and `citygrid traffic evaluate`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citygrid.settings import get_settings

edge = typer.Typer()
stream = typer.Typer()
traffic = typer.Typer()
console = Console()


@edge.command()
def replay(devices: int = typer.Option(6, help="How many simulated devices."),
           steps: int = typer.Option(16, help="Quarter-hours each replays.")) -> None:
    """Replay SimBench load and PV profiles from simulated, signed devices over MQTT."""
    from citygrid.sim.fleet import provision, replay_fleet

    s = get_settings()
    fleet = provision(s, devices)
    sent = replay_fleet(s, fleet, steps)
    console.print(f"{sent} readings published from {len(fleet)} devices")


@edge.command()
def simulate(key: Path = typer.Option(..., help="The device's key file."),
             outbox: Path = typer.Option(..., help="The outbox database (SQLite, WAL)."),
             profile: int = typer.Option(0, help="Which SimBench meter profile this device replays."),
             start_ms: int = typer.Option(0, help="Timestamp of sequence number 0 (default: 20 days ago)."),
             until_seq: int = typer.Option(None, help="Stop once this many readings exist in total."),
             district: str = typer.Option("d1", help="District in the readings topic."),
             commit_every: int = typer.Option(1, help="Readings per outbox transaction."),
             with_models: bool = typer.Option(False, help="Score with the models in the models directory."),
             ) -> None:
    """Run one device's agent on a replayed SimBench meter profile instead of a real meter."""
    from citygrid.edge.cli import run_agent
    from citygrid.sim.profiles import STEP_S, ProfileReplay, load_profiles

    s = get_settings()
    start = start_ms or int(time.time() * 1000) - 20 * 86400 * 1000
    meters = [p for p in load_profiles(s.paths.cache_dir) if p.kind == "meter"]
    chosen = meters[profile % len(meters)]

    def driver_for(first: int) -> ProfileReplay:
        # A restarted device measures from where the killed one stopped, on the same clock.
        return ProfileReplay(chosen, start + first * STEP_S * 1000, first)

    run_agent(s, key, outbox, driver_for, district, until_seq, commit_every, with_models)


@edge.command()
def train(out: Path = typer.Option(None, help="Where the ONNX files go (default: <cache>/models)."),
          version: str = typer.Option("1", help="Model version recorded in each reading."),
          trees: int = typer.Option(30, help="Trees per forest.")) -> None:
    """Train the load nowcast and meter anomaly models on real SimBench profiles; export ONNX."""
    from citygrid.sim.train_models import train as train_models

    cache = get_settings().paths.cache_dir
    for name, path in train_models(cache, out or cache / "models", version, trees).items():
        console.print(f"{name}: {path}")


@stream.command()
def evaluate(out_dir: Path = typer.Option(Path("reports"), help="Folder for prequential.md and .json."),
             days: int = typer.Option(0, help="Energy days to replay (0 = the whole year)."),
             traffic: bool = typer.Option(True, help="Include SUMO induction-loop counts.")) -> None:
    """Evaluate the forecasters prequentially on SimBench and SUMO data; write the report."""
    from citygrid.sim.prequential import energy_results, traffic_results, write_report

    settings = get_settings()
    s, cache = settings.stream, settings.paths.cache_dir
    notes = [f"Energy: SimBench grid profiles, {'a full year' if not days else f'{days} days'} at "
             f"{s.energy_step_s // 60} min; seasonal-naive = same quarter-hour one day earlier."]
    rows = energy_results(cache, s, days or None)
    if traffic:
        rows += traffic_results(cache, s)
        notes.append(f"Traffic: SUMO induction loops (seed 1, 2 h, {s.traffic_step_s} s counts); "
                     f"seasonal-naive = {s.traffic_season_steps} intervals earlier; intersections sum "
                     "the loops on the lanes entering them.")
    md = write_report(rows, out_dir, s, notes)
    typer.echo(md.read_text().split("## Every series")[0])
    typer.echo(f"written: {md} and {md.with_suffix('.json')}")


@traffic.command("evaluate")
def traffic_evaluate(
        seeds: int = typer.Option(5, help="Scenario seeds (1..N), each run under every control."),
        hours: float = typer.Option(2.0, help="Simulated hours of the morning-peak scenario."),
        workers: int = typer.Option(2, help="SUMO runs in parallel."),
        report: Path = typer.Option(Path("reports/traffic_evaluation.md"), help="Markdown report."),
) -> None:
    """Fixed time vs SUMO's actuated lights vs citygrid's advice on the same scenario and seeds."""
    from citygrid.sim.traffic.evaluation import MODES, write_report
    from citygrid.sim.traffic.evaluation import evaluate as run_evaluation

    settings = get_settings()
    result = run_evaluation(settings.paths.cache_dir, list(range(1, seeds + 1)), hours, settings, workers)
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
