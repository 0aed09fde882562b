"""The controller on networks it was not written for: a RESCO real-city map and an odd random network
from netgenerate, without crash and within its safety bounds (minimum green, the program's own
yellows, maximum red per movement), second by second in SUMO."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from citygrid.settings import CitygridSettings, child_env
from citygrid.sim.traffic.evaluation import run_one, sumo_command
from citygrid.sim.traffic.networks import Case, from_sumocfg, prepare
from citygrid.sim.traffic.scenario import sumo_home

S = CitygridSettings()
ROOT = Path(__file__).resolve().parents[4]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cologne() -> Case:
    """RESCO's cologne1, fetched by the project's setup step when it is not cached yet."""
    cfg = S.paths.cache_dir / "resco" / "cologne1" / "cologne1.sumocfg"
    if not cfg.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "setup" / "resco.sh")], check=True,
                       env=child_env(CITYGRID_CACHE=str(S.paths.cache_dir)))
    return from_sumocfg(cfg)


def odd_network(folder: Path) -> Case:
    """A random network of irregular junctions (3 to 5 legs, odd angles), all signalised by SUMO's guess."""
    bin_ = sumo_home() / "bin"
    env = child_env(SUMO_HOME=str(sumo_home()))
    subprocess.run([str(bin_ / "netgenerate"), "--rand", "--rand.iterations", "60", "--seed", "11",
                    "--default-junction-type", "traffic_light", "--default.lanenumber", "2",
                    "--rand.max-distance", "250", "-o", "odd.net.xml"], cwd=folder, env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, str(sumo_home() / "tools" / "randomTrips.py"), "-n", "odd.net.xml",
                    "-r", "odd.rou.xml", "-e", "900", "--period", "1.5", "--seed", "11", "--validate"],
                   cwd=folder, env=env, check=True, capture_output=True)
    return Case("odd", folder / "odd.net.xml", (folder / "odd.rou.xml",), (), 0, 900)


def _watch(case: Case, detectors: Path | None, out: Path) -> dict:
    """Run citygrid on every light (in a child: libsumo is one simulation per process); what it saw."""
    import libsumo as sim

    from citygrid.edge.traffic.controller import SignalController

    cmd = sumo_command(prepare(out, case), "citygrid", 1, out / "trips.xml")
    if detectors is None:  # a network nobody equipped: the controller must read the lanes themselves
        i = cmd.index("--additional-files")
        del cmd[i:i + 2]
    sim.start(cmd)
    try:
        lights = [SignalController(sim, t, S.traffic, autonomous=True) for t in sim.trafficlight.getIDList()]
        return _observe(sim, lights, case.end)
    finally:
        sim.close()


def _observe(sim, lights, end: float) -> dict:
    greens, yellows, worst_red, switchable = [], set(), 0.0, 0
    since = {c.tls: {} for c in lights}
    run = {c.tls: (None, 0.0) for c in lights}
    first = sim.simulation.getTime() + 1
    while sim.simulation.getTime() < end:
        sim.simulationStep()
        now = sim.simulation.getTime()
        for c in lights:
            c.step(now)
            if not c.layout.switchable:
                continue
            state = sim.trafficlight.getRedYellowGreenState(c.tls)
            last, start = run[c.tls]
            if state != last:
                if last is not None and "y" in last:
                    yellows.add(round(now - start, 1))
                started_seen = start > first  # the green running when the watch began is cut short
                if started_seen and last in {c.layout.green_state(k) for k in range(len(c.layout.green))}:
                    greens.append(now - start)
                run[c.tls] = (state, now)
            for m in c.layout.movements:
                seen = since[c.tls]
                if state[m.index] in "Gg" or sim.lane.getLastStepHaltingNumber(m.in_lane) == 0:
                    seen[m.index] = now
                worst_red = max(worst_red, now - seen.setdefault(m.index, now))
    switchable = sum(c.layout.switchable for c in lights)
    allowed_yellow = {y for c in lights for y in c.layout.yellow_s}
    return {"greens": greens, "yellows": yellows, "allowed_yellow": allowed_yellow, "worst_red": worst_red,
            "lights": len(lights), "switchable": switchable}


def _in_child(fn, *args):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def _assert_bounds(seen: dict) -> None:
    b = S.traffic
    assert seen["switchable"] > 0 and len(seen["greens"]) > 10
    assert min(seen["greens"]) >= b.min_green_s
    assert seen["yellows"] <= seen["allowed_yellow"]  # only the program's own yellow times
    # A queued movement waits at most max red, plus the green then running its minimum and one intergreen.
    assert seen["worst_red"] <= b.max_cycle_s + b.min_green_s + 2 * max(seen["allowed_yellow"]) + 2


def test_on_a_real_city_map_the_controller_keeps_its_bounds(cologne: Case, tmp_path: Path) -> None:
    short = replace(cologne, end=cologne.begin + 1200)
    seen = _in_child(_watch, short, tmp_path, tmp_path)
    assert seen["lights"] == 1
    _assert_bounds(seen)


def test_on_an_odd_random_network_without_detectors_it_runs_and_keeps_its_bounds(tmp_path: Path) -> None:
    seen = _in_child(_watch, odd_network(tmp_path), None, tmp_path)
    assert seen["lights"] >= 5
    _assert_bounds(seen)


def test_every_control_runs_on_a_short_window_of_a_real_map(cologne: Case, tmp_path: Path) -> None:
    short = replace(cologne, end=cologne.begin + 300)
    p = prepare(tmp_path, short)
    runs = [_in_child(run_one, p, mode, 1, S, tmp_path)
            for mode in ("fixed", "actuated", "actuated-rebuilt", "max-pressure", "citygrid")]
    assert all(r["vehicles"] > 100 and r["avg_delay_s"] > 0 for r in runs)
    assert len({round(r["avg_delay_s"], 3) for r in runs}) > 1  # the controls differ
