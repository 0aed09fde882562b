"""A reproducible SUMO traffic scenario: a signalised grid, a morning-peak demand, induction loops.

Built offline with eclipse-sumo's own tools (netgenerate, randomTrips.py) and
cached under a folder keyed by every parameter, so the stream engineer's
forecasting evaluation, the edge's loop-replay driver and the traffic closed
loop all see the very same vehicles. `detector_counts` runs SUMO headless and
reads the E1 detectors' own XML output (no TraCI round trips, so an hour of
traffic simulates in seconds).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from citygrid.edge.errors import SensorError
from citygrid.settings import child_env

# Vehicles inserted per hour over the run, in equal slices: a ramp to a morning peak
# and back, roughly the shape of an urban weekday 07:00-09:00.
MORNING_PEAK_VEH_PER_H = (500, 800, 1200, 1700, 2000, 1800, 1300, 900)
# Demand levels of the traffic evaluation: the morning peak above, scaled. Light is the single-lane
# grid's everyday peak, heavy keeps its busiest junctions near capacity, saturated is beyond it.
DEMAND_LEVELS = {"light": 1.0, "heavy": 1.5, "saturated": 2.0}
DETECTOR_SETBACK_M = 30.0  # loops sit this far before the stop line, as on real approaches


@dataclass(frozen=True)
class Scenario:
    """The parameters that define a scenario; the cache key is derived from all of them."""

    grid: int = 3
    block_m: float = 200.0
    lanes: int = 1
    seed: int = 1
    hours: float = 2.0
    interval_s: int = 60
    peak: tuple[int, ...] = MORNING_PEAK_VEH_PER_H

    @classmethod
    def at(cls, level: str, **kw: object) -> Scenario:
        """The scenario at a named demand level (see DEMAND_LEVELS)."""
        if level not in DEMAND_LEVELS:
            raise ValueError(f"unknown demand level {level!r}; use one of {sorted(DEMAND_LEVELS)}")
        scale = DEMAND_LEVELS[level]
        return cls(peak=tuple(round(v * scale) for v in MORNING_PEAK_VEH_PER_H), **kw)

    def key(self) -> str:
        """Stable folder name: any parameter change builds a new scenario."""
        raw = json.dumps(asdict(self), sort_keys=True).encode()
        return f"grid{self.grid}-s{self.seed}-" + hashlib.sha256(raw).hexdigest()[:12]


def sumo_home() -> Path:
    """Where the eclipse-sumo wheel keeps its binaries and tools."""
    try:
        import sumo
    except ImportError as exc:
        raise SensorError("eclipse-sumo is not installed; install citygrid[sim]") from exc
    return Path(sumo.SUMO_HOME)


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(SUMO_HOME=str(sumo_home())), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SensorError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr[-1500:]}")


def _approach_lanes(net_file: Path) -> list[tuple[str, float]]:
    """(lane id, lane length) of every lane that ends at a traffic light."""
    root = ET.parse(net_file).getroot()
    tls_nodes = {j.get("id") for j in root.iter("junction") if j.get("type") == "traffic_light"}
    lanes = []
    for edge in root.iter("edge"):
        if edge.get("function") == "internal" or edge.get("to") not in tls_nodes:
            continue
        for lane in edge.iter("lane"):
            lanes.append((lane.get("id"), float(lane.get("length"))))
    return sorted(lanes)


def build(cache_dir: Path, scenario: Scenario) -> Path:
    """Build (once) the network, demand, detectors and SUMO config; return the scenario folder."""
    d = Path(cache_dir) / scenario.key()
    if (d / "scenario.sumocfg").exists():
        return d
    tmp = d.with_name(d.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    home = sumo_home()
    end_s = int(scenario.hours * 3600)
    _run([str(home / "bin" / "netgenerate"), "--grid", "--grid.number", str(scenario.grid),
          "--grid.length", str(scenario.block_m), "--grid.attach-length", str(scenario.block_m),
          "--default.lanenumber", str(scenario.lanes), "--default-junction-type", "traffic_light",
          "--tls.default-type", "static", "--no-turnarounds", "true", "--seed", str(scenario.seed),
          "-o", "net.net.xml"], tmp)
    _run([sys.executable, str(home / "tools" / "randomTrips.py"), "-n", "net.net.xml",
          "-o", "trips.trips.xml", "-r", "routes.rou.xml", "-b", "0", "-e", str(end_s),
          "--insertion-rate", *[str(r) for r in scenario.peak], "--fringe-factor", "max",
          "--random-depart", "--seed", str(scenario.seed), "--validate"], tmp)
    loops = ET.Element("additional")
    for lane, length in _approach_lanes(tmp / "net.net.xml"):
        ET.SubElement(loops, "inductionLoop", id=f"e1_{lane}", lane=lane,
                      pos=f"{max(1.0, length - DETECTOR_SETBACK_M):.1f}",
                      period=str(scenario.interval_s), file="detectors.out.xml")
    ET.ElementTree(loops).write(tmp / "detectors.add.xml")
    cfg = ET.Element("configuration")
    inp = ET.SubElement(cfg, "input")
    ET.SubElement(inp, "net-file", value="net.net.xml")
    ET.SubElement(inp, "route-files", value="routes.rou.xml")
    ET.SubElement(inp, "additional-files", value="detectors.add.xml")
    t = ET.SubElement(cfg, "time")
    ET.SubElement(t, "begin", value="0")
    ET.SubElement(t, "end", value=str(end_s))
    ET.SubElement(cfg, "random_number").append(ET.Element("seed", value=str(scenario.seed)))
    ET.ElementTree(cfg).write(tmp / "scenario.sumocfg")
    (tmp / "scenario.json").write_text(json.dumps(asdict(scenario), indent=1))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return d


def simulate(folder: Path) -> Path:
    """Run SUMO headless once over the scenario; return the detectors' output file."""
    out = folder / "detectors.out.xml"
    if out.exists() and (folder / "simulated.ok").exists():
        return out
    _run([str(sumo_home() / "bin" / "sumo"), "-c", "scenario.sumocfg", "--no-step-log", "true",
          "--no-warnings", "true", "--duration-log.disable", "true"], folder)
    (folder / "simulated.ok").write_text("")
    return out


def detector_counts(cache_dir: Path, seed: int = 1, hours: float = 2.0,
                    interval_s: int = 60) -> dict[str, np.ndarray]:
    """Vehicles counted per interval by each induction loop: {detector id: counts[n_intervals]}."""
    scenario = Scenario(seed=seed, hours=hours, interval_s=interval_s)
    out = simulate(build(cache_dir, scenario))
    n = int(np.ceil(scenario.hours * 3600 / interval_s))
    counts: dict[str, np.ndarray] = {}
    for iv in ET.parse(out).getroot().iter("interval"):
        series = counts.setdefault(iv.get("id"), np.zeros(n, dtype=np.int64))
        i = int(float(iv.get("begin")) // interval_s)
        if i < n:
            series[i] = int(iv.get("nVehContrib"))
    return dict(sorted(counts.items()))
