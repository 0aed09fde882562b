"""Any SUMO scenario as an evaluation case: its network, demand and time window, plus what the
comparison adds next to it (never inside it): citygrid's lane-area detectors, SUMO's actuated control
on the map's own plans, and netconvert's rebuilt actuated programs.

A case is read from a `.sumocfg` (RESCO's maps, or any other) or built from the
project's own grid scenario; everything derived is cached in a folder keyed by the
case's files, so the modes and seeds of one evaluation share it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from citygrid.edge.traffic import detectors
from citygrid.edge.traffic.phases import Layout, Movement
from citygrid.settings import child_env
from citygrid.sim.traffic.scenario import Scenario, build, sumo_home
from citygrid.storage import atomic_write
from citygrid.stream.errors import StreamError

# SUMO's own defaults for actuated greens (netconvert --tls.min-dur / --tls.max-dur).
ACTUATED_MIN_S, ACTUATED_MAX_S = 5.0, 50.0


class TrafficEvaluationError(StreamError):
    """The SUMO scenario could not be prepared or run; the message says which step failed."""


@dataclass(frozen=True)
class Case:
    """One scenario to evaluate: a network, its demand, its time window."""

    name: str
    net: Path
    routes: tuple[Path, ...]
    additionals: tuple[Path, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Prepared:
    """A case plus the files the comparison adds next to it."""

    case: Case
    detectors: Path  # citygrid's lane-area detectors (used by every mode, so all see the same sensors)
    actuated_own: Path  # additional file: the map's own plans as SUMO actuated programs
    rebuilt_net: Path  # netconvert --tls.rebuild --tls.default-type actuated
    rebuilt_detectors: Path  # the same zones on the rebuilt network (netconvert recomputes lane lengths)


def _files(cfg: Path, root: ET.Element, tag: str) -> tuple[Path, ...]:
    node = root.find(f"input/{tag}")
    if node is None:
        return ()
    return tuple((cfg.parent / f.strip()).resolve() for f in node.get("value", "").replace(",", " ").split())


def from_sumocfg(cfg: Path) -> Case:
    """The case a SUMO configuration describes (its net, routes, additionals and begin/end)."""
    root = ET.parse(cfg).getroot()
    nets = _files(cfg, root, "net-file")
    if not nets:
        raise TrafficEvaluationError(f"{cfg} names no net-file; pass a SUMO configuration with one")

    def _time(tag: str, default: int) -> int:
        node = root.find(f"time/{tag}")
        return int(float(node.get("value"))) if node is not None else default

    begin = _time("begin", 0)
    return Case(cfg.name.removesuffix(".sumocfg"), nets[0], _files(cfg, root, "route-files"),
                _files(cfg, root, "additional-files"), begin, _time("end", begin + 3600))


def grid_case(cache_dir: Path, scenario: Scenario, name: str) -> Case:
    """The project's own grid scenario (built once) as a case; its loops' file output is left out."""
    folder = build(cache_dir, scenario)
    return Case(name, folder / "net.net.xml", (folder / "routes.rou.xml",), (), 0, int(scenario.hours * 3600))


def _layouts(net: Path) -> tuple[list[Layout], detectors.LaneGraph]:
    """Every light's layout and the lane graph, read from the network file (no simulation)."""
    root = ET.parse(net).getroot()
    lengths = {ln.get("id"): float(ln.get("length")) for ln in root.iter("lane")}
    lights = {j.get("id") for j in root.iter("junction") if "traffic_light" in (j.get("type") or "")}
    signalised = frozenset(ln.get("id") for e in root.iter("edge") if e.get("to") in lights
                           for ln in e.iter("lane"))
    links: dict[str, list[Movement]] = {}
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for c in root.iter("connection"):
        a, b = f"{c.get('from')}_{c.get('fromLane')}", f"{c.get('to')}_{c.get('toLane')}"
        if not a.startswith(":") and not b.startswith(":"):
            succ.setdefault(a, []).append(b)
            pred.setdefault(b, []).append(a)
        if c.get("tl") and c.get("linkIndex") is not None:
            links.setdefault(c.get("tl"), []).append(Movement(int(c.get("linkIndex")), a, b))
    layouts = []
    for logic in root.iter("tlLogic"):
        phases = tuple(_Phase(float(p.get("duration")), p.get("state")) for p in logic.iter("phase"))
        layouts.append(Layout.of(logic.get("id"), logic.get("programID"), phases,
                                 tuple(sorted(links.get(logic.get("id"), []), key=lambda m: m.index))))
    graph = detectors.LaneGraph(lengths, {k: tuple(dict.fromkeys(v)) for k, v in succ.items()},
                                {k: tuple(dict.fromkeys(v)) for k, v in pred.items()}, signalised)
    return layouts, graph


@dataclass(frozen=True)
class _Phase:
    duration: float
    state: str


def _detectors_xml(net: Path) -> bytes:
    layouts, graph = _layouts(net)
    root = ET.Element("additional")
    seen = set()
    for layout in layouts:
        for d in detectors.placements(layout, graph):
            if d.id in seen:
                continue
            seen.add(d.id)
            det = ET.SubElement(root, "laneAreaDetector", id=d.id, lane=d.lane, pos=f"{d.start:.2f}",
                                endPos=f"{d.end:.2f}", period="3600", file="NUL")
            if d.weight != 1.0:
                ET.SubElement(det, "param", key="weight", value=f"{d.weight:.6g}")
    return ET.tostring(root)


def _actuated_own_xml(net: Path) -> bytes:
    """The map's own programs, unchanged in order and intergreens, run by SUMO's actuated logic."""
    root = ET.Element("additional")
    for logic in ET.parse(net).getroot().iter("tlLogic"):
        tl = ET.SubElement(root, "tlLogic", id=logic.get("id"), type="actuated",
                           programID="citygrid-actuated", offset=logic.get("offset", "0"))
        for p in logic.iter("phase"):
            attrs = {"duration": p.get("duration"), "state": p.get("state")}
            green = not any(c in "yY" for c in p.get("state")) and any(c in "Gg" for c in p.get("state"))
            if green:
                dur = float(p.get("duration"))
                attrs["minDur"] = p.get("minDur") or f"{min(dur, ACTUATED_MIN_S):g}"
                attrs["maxDur"] = p.get("maxDur") or f"{max(dur, ACTUATED_MAX_S):g}"
            ET.SubElement(tl, "phase", attrs)
    return ET.tostring(root)


def prepare(cache_dir: Path, case: Case) -> Prepared:
    """Write (once) the detectors, the actuated own plans and the rebuilt network next to the case."""
    # Keyed by the network and the detectors placed on it: a change to either prepares anew.
    placed = _detectors_xml(case.net)
    digest = hashlib.sha256(case.net.read_bytes() + placed).hexdigest()[:12]
    folder = Path(cache_dir) / "evaluation-nets" / f"{case.name}-{digest}"
    done = Prepared(case, folder / "detectors.add.xml", folder / "actuated.add.xml",
                    folder / "rebuilt.net.xml", folder / "rebuilt-detectors.add.xml")
    if done.rebuilt_net.exists():
        return done
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(done.detectors, placed)
    atomic_write(done.actuated_own, _actuated_own_xml(case.net))
    out = folder / "netconvert.out.xml"
    proc = subprocess.run([str(sumo_home() / "bin" / "netconvert"), "-s", str(case.net), "--tls.rebuild",
                           "--tls.default-type", "actuated", "--no-warnings", "-o", str(out)],
                          capture_output=True, text=True, env=child_env(SUMO_HOME=str(sumo_home())))
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise TrafficEvaluationError(f"netconvert could not rebuild {case.net.name}: {proc.stderr[-800:]}")
    atomic_write(done.rebuilt_detectors, _detectors_xml(out))
    # Written last and atomically: its presence is what marks the folder as complete.
    atomic_write(done.rebuilt_net, out.read_bytes())
    out.unlink()
    return done
