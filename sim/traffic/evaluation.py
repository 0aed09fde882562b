"""Closed-loop evaluation: the same SUMO scenario and seeds under fixed time, SUMO's actuated lights, and
citygrid's advice.

The advice mode runs the very code of the live loop (the edge's SignalController
and interval_counts, the stream's Advisor) but in-process with libsumo instead
of through MQTT and Kafka, so fifteen two-hour runs fit in a couple of minutes;
the integration test covers the same loop over the real brokers.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import statistics
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from citygrid.edge.traffic.controller import SignalController
from citygrid.edge.traffic.detectors import interval_counts
from citygrid.reading import Reading
from citygrid.settings import CitygridSettings
from citygrid.sim.traffic.scenario import Scenario, build, sumo_home
from citygrid.storage import atomic_write
from citygrid.stream.errors import StreamError
from citygrid.stream.traffic.advice import Advisor

MODES = ("fixed", "actuated", "citygrid")
EPOCH_MS = 1_767_225_600_000  # 2026-01-01: simulated time is stamped from here


class TrafficEvaluationError(StreamError):
    """The SUMO scenario could not be prepared or run; the message says which step failed."""


@dataclass(frozen=True)
class LoopFiles:
    """The edge's scenario plus what the closed loop adds: silent detectors and an actuated network."""

    folder: Path
    net: Path
    actuated_net: Path
    routes: Path
    detectors: Path


def prepare(cache_dir: Path, scenario: Scenario) -> LoopFiles:
    """Build (once) the scenario and, next to it, the loop's detectors and SUMO's actuated variant."""
    base = build(cache_dir, scenario)
    own = base.with_name(base.name + ".loop")
    files = LoopFiles(base, base / "net.net.xml", own / "actuated.net.xml", base / "routes.rou.xml",
                      own / "loops.add.xml")
    if files.actuated_net.exists() and files.detectors.exists():
        return files
    own.mkdir(parents=True, exist_ok=True)
    # The same loops as the edge scenario, but the counts are read over TraCI, not written to disk
    # (and the edge's cached detector output must stay untouched).
    loops = ET.parse(base / "detectors.add.xml")
    for loop in loops.getroot().iter("inductionLoop"):
        loop.set("file", "NUL")
        loop.set("period", str(scenario.interval_s))
    atomic_write(files.detectors, ET.tostring(loops.getroot()))
    out = own / "netconvert.out.xml"
    proc = subprocess.run([str(sumo_home() / "bin" / "netconvert"), "-s", str(files.net), "--tls.rebuild",
                           "--tls.default-type", "actuated", "-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(own, ignore_errors=True)
        raise TrafficEvaluationError(f"netconvert could not build the actuated network: {proc.stderr[-800:]}")
    # Written last and atomically: its presence is what marks the loop's files as complete.
    atomic_write(files.actuated_net, out.read_bytes())
    out.unlink()
    return files


def sumo_command(files: LoopFiles, mode: str, seed: int, end_s: int, tripinfo: Path) -> list[str]:
    """The SUMO command line of one run (the network differs by mode, nothing else does)."""
    net = files.actuated_net if mode == "actuated" else files.net
    return ["sumo", "-n", str(net), "-r", str(files.routes), "-a", str(files.detectors),
            "--seed", str(seed), "--begin", "0", "--end", str(end_s), "--no-step-log", "true",
            "--no-warnings", "true", "--duration-log.disable", "true", "--time-to-teleport", "300",
            "--tripinfo-output", str(tripinfo), "--tripinfo-output.write-unfinished", "true"]


def run_one(files: LoopFiles, mode: str, seed: int, end_s: int, s: CitygridSettings, out_dir: Path) -> dict:
    """One SUMO run in this process (libsumo is one simulation per process); its trip statistics."""
    import libsumo as sim

    tripinfo = out_dir / f"tripinfo-{mode}-{seed}.xml"
    t0 = time.perf_counter()
    sim.start(sumo_command(files, mode, seed, end_s, tripinfo))
    try:
        if mode == "citygrid":
            _advised_run(sim, s, end_s)
        else:
            while sim.simulation.getTime() < end_s:
                sim.simulationStep()
    finally:
        sim.close()
    stats = trip_stats(tripinfo, end_s)
    tripinfo.unlink()
    return {"mode": mode, "seed": seed, "wall_s": round(time.perf_counter() - t0, 2), **stats}


def _advised_run(sim, s: CitygridSettings, end_s: int) -> None:
    advisor = Advisor(s.traffic, s.stream)
    lights = {tls: SignalController(sim, tls, s.traffic) for tls in sim.trafficlight.getIDList()}
    seqs = dict.fromkeys(lights, 0)
    step = s.traffic.interval_s
    for t in range(step, end_s + 1, step):
        sim.simulationStep(float(t))
        for tls, light in lights.items():
            values = interval_counts(sim, light.layout)
            values["plan_intergreen_s"] = light.layout.intergreens_s
            reading = Reading(device=tls, seq=seqs[tls], ts_ms=EPOCH_MS + t * 1000, kind="traffic",
                              values=values)
            seqs[tls] += 1
            advice = advisor.advise(reading)
            if advice is not None:
                light.apply(advice)


def trip_stats(tripinfo: Path, end_s: int) -> dict:
    """Mean waiting and travel time over every vehicle that entered (unfinished ones count too)."""
    trips = list(ET.parse(tripinfo).getroot().iter("tripinfo"))
    if not trips:
        raise TrafficEvaluationError(f"{tripinfo} has no trips; the scenario inserted no vehicles")
    waiting = [float(t.get("waitingTime")) for t in trips]
    travel = [float(t.get("duration")) for t in trips]
    arrived = sum(1 for t in trips if float(t.get("arrival")) >= 0)
    return {"vehicles": len(trips), "mean_waiting_s": statistics.fmean(waiting),
            "mean_travel_s": statistics.fmean(travel), "throughput_veh_h": arrived * 3600.0 / end_s}


def evaluate(cache_dir: Path, seeds: list[int], hours: float, s: CitygridSettings, workers: int = 2) -> dict:
    """Every mode on every seed (in parallel worker processes); the runs and the per-mode summary."""
    out_dir = Path(cache_dir) / "sumo" / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seed in seeds:
        scenario = Scenario(seed=seed, hours=hours, interval_s=s.traffic.interval_s)
        files = prepare(Path(cache_dir) / "sumo", scenario)
        jobs += [(files, mode, seed, int(hours * 3600), s, out_dir) for mode in MODES]
    # fork: libsumo is never started in the parent, and spawn would re-run a script's main module
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, maxtasksperchild=1) as pool:  # a fresh process per libsumo run
        runs = pool.starmap(run_one, jobs)
    return {"seeds": seeds, "hours": hours, "runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each metric, per mode, and advice's relative gains."""
    summary: dict = {}
    for mode in MODES:
        rows = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            m: {"mean": statistics.fmean(r[m] for r in rows),
                "std": statistics.stdev([r[m] for r in rows]) if len(rows) > 1 else 0.0}
            for m in ("mean_waiting_s", "mean_travel_s", "throughput_veh_h")
        }
    wait = {m: summary[m]["mean_waiting_s"]["mean"] for m in MODES}
    summary["waiting_reduction"] = {
        base: 1.0 - wait["citygrid"] / wait[base] if wait[base] > 0 else 0.0 for base in ("fixed", "actuated")
    }
    return summary


def write_report(result: dict, path_md: Path) -> None:
    """The Markdown table and the JSON it was made from."""
    atomic_write(path_md.with_suffix(".json"), json.dumps(result, indent=1))
    s = result["summary"]
    lines = [
        "# Traffic closed loop: evaluation",
        "",
        f"Generated by `citygrid traffic evaluate`: {len(result['seeds'])} seeds ({result['seeds']}), "
        f"{result['hours']} h morning-peak scenario on the edge's 3x3 signalised grid; mean ± standard "
        "deviation over seeds. Waiting and travel time are per vehicle, unfinished vehicles included.",
        "",
        "| control | mean waiting (s) | mean travel (s) | throughput (veh/h) |",
        "|---|---|---|---|",
    ]
    for mode in MODES:
        cells = [f"{s[mode][m]['mean']:.2f} ± {s[mode][m]['std']:.2f}"
                 for m in ("mean_waiting_s", "mean_travel_s", "throughput_veh_h")]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    red = s["waiting_reduction"]
    lines += ["", f"Waiting time with citygrid's advice: {red['fixed']:.1%} below fixed time (target 30%), "
              f"{red['actuated']:.1%} below SUMO's actuated control (target 15%).", ""]
    atomic_write(path_md, "\n".join(lines))
