"""The simulators' commands, in the groups they serve: `citygrid edge replay / simulate / train`,
`citygrid stream evaluate / balance` and `citygrid traffic evaluate`."""

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
             traffic: bool = typer.Option(True, help="Include SUMO induction-loop counts."),
             grids: str = typer.Option("", help="SimBench grid codes, comma-separated (default: the three "
                                                "in citygrid.sim.profiles.GRIDS)."),
             models: str = typer.Option("", help="Forecasters to compare, comma-separated (default: the "
                                                 "workers' model from the settings)."),
             ) -> None:
    """Evaluate the forecasters prequentially on SimBench and SUMO data; write the report."""
    from citygrid.sim.prequential import energy_results, traffic_results
    from citygrid.sim.prequential_report import energy_notes, write_report

    settings = get_settings()
    s, cache = settings.stream, settings.paths.cache_dir
    t0 = time.monotonic()
    rows = energy_results(cache, s, days or None, [g.strip() for g in grids.split(",") if g.strip()],
                          [m.strip() for m in models.split(",") if m.strip()])
    notes = energy_notes(s, days, time.monotonic() - t0)
    if traffic:
        rows += traffic_results(cache, s)
        notes.append(f"Traffic: SUMO induction loops (seed 1, 2 h, {s.traffic_step_s} s counts); "
                     f"seasonal naive = {s.traffic_season_steps} intervals earlier; intersections sum "
                     "the loops on the lanes entering them.")
    md = write_report(rows, out_dir, s, notes)
    typer.echo(md.read_text().split("## Every series")[0])
    typer.echo(f"written: {md} and {md.with_suffix('.json')}")


@stream.command()
def balance(out: Path = typer.Option(Path("reports/balancing.md"), help="Markdown report (+ .json)."),
            grids: str = typer.Option("", help="SimBench grid codes, comma-separated (default: the three "
                                               "in citygrid.sim.profiles.GRIDS)."),
            days: int = typer.Option(2, help="Market days cleared in every 28 (the forecasters learn every "
                                             "day); 28 clears the whole year."),
            ) -> None:
    """Feeder peak, imbalance and self-consumption: quantile bids + batteries vs point bids, per grid."""
    from citygrid.sim.balancing import Sample, notes
    from citygrid.sim.balancing import balance as run_balance
    from citygrid.sim.balancing_report import table, write_report
    from citygrid.sim.profiles import GRIDS

    settings = get_settings()
    sample = Sample(days=days)
    t0 = time.monotonic()
    results = run_balance(settings, [g.strip() for g in grids.split(",") if g.strip()] or list(GRIDS), sample)
    md = write_report(results, out, notes(settings, sample, time.monotonic() - t0))
    typer.echo("\n".join(table(results)))
    typer.echo(f"written: {md} and {md.with_suffix('.json')}")


@traffic.command("evaluate")
def traffic_evaluate(
        net: list[Path] = typer.Option(None, "--net", help="A SUMO scenario (.sumocfg); repeatable."),
        resco: str = typer.Option(None, help="RESCO maps fetched by scripts/setup/resco.sh, comma-"
                                  "separated [default: cologne1,ingolstadt1,grid4x4 unless --net is given]."),
        grid: str = typer.Option(None, help="Demand levels of the project's grid, comma-separated "
                                 "[default: light,heavy,saturated unless --net is given]."),
        seeds: int = typer.Option(5, help="Seeds (1..N), each run under every control."),
        hours: float = typer.Option(2.0, help="Simulated hours of the project's grid scenario."),
        workers: int = typer.Option(1, help="SUMO runs in parallel (the machine is shared: keep it small)."),
        report: Path = typer.Option(Path("reports/traffic.md"), help="Markdown report (+ .json)."),
) -> None:
    """Fixed plans, SUMO actuated (own, rebuilt), max-pressure and citygrid on the same demand and seeds."""
    from citygrid.sim.traffic.evaluation import MODES, evaluate
    from citygrid.sim.traffic.networks import TrafficEvaluationError, from_sumocfg, grid_case
    from citygrid.sim.traffic.report import report_notes, write_report
    from citygrid.sim.traffic.scenario import Scenario

    settings = get_settings()
    cache = settings.paths.cache_dir
    own = not net
    default_maps = "cologne1,ingolstadt1,grid4x4" if own else ""
    resco_names = [n for n in (resco if resco is not None else default_maps).split(",") if n]
    default_levels = "light,heavy,saturated" if own else ""
    levels = [lv for lv in (grid if grid is not None else default_levels).split(",") if lv]
    cases = [from_sumocfg(Path(p)) for p in net or []]
    for name in resco_names:
        cfg = cache / "resco" / name / f"{name}.sumocfg"
        if not cfg.exists():
            raise TrafficEvaluationError(f"no RESCO map {name!r} in {cache / 'resco'}: run "
                                         "`bash scripts/setup/resco.sh` (it fetches the maps from PyPI)")
        cases.append(from_sumocfg(cfg))
    seed_list = list(range(1, seeds + 1))
    t0 = time.perf_counter()
    runs = evaluate(cache, cases, seed_list, settings, workers) if cases else []
    for level in levels:
        # The grid's demand is drawn per seed, so each seed is its own case file; one name in the table.
        for seed in seed_list:
            case = grid_case(cache / "sumo", Scenario.at(level, seed=seed, hours=hours), f"grid-{level}")
            runs += evaluate(cache, [case], [seed], settings, workers)
    notes = report_notes(seed_list, hours, time.perf_counter() - t0)
    summary = write_report(runs, report, notes)
    table = Table("case", *MODES, "vs actuated", "vs max-pressure",
                  title="average delay (s), mean over seeds")
    for case, c in summary.items():
        t = c["targets"]
        table.add_row(case, *(f"{c['modes'][m]['avg_delay_s']['mean']:.1f}" if m in c["modes"] else "-"
                              for m in MODES),
                      f"{t.get('below_actuated', 0):+.1%}", f"{t.get('below_max_pressure', 0):+.1%}")
    console.print(table)
    console.print(f"report: {report} (+ .json)")
