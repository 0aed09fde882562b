"""Closed-loop evaluation on any SUMO scenario: the same demand and seeds under the map's own fixed
plans, SUMO's actuated control (on the own plans, and on netconvert's rebuilt programs), a reference
max-pressure, and citygrid.

Every mode loads the same lane-area detectors (so all see the same network), and
the two controllers driven from Python run the very code of the live loop (the
edge's SignalController, the stream's Advisor) in-process with libsumo instead of
through MQTT and Kafka; the integration test covers the same loop over the real
brokers. One run per process (libsumo is one simulation per process).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from pathlib import Path

from citygrid.commands import SignalAdvice
from citygrid.edge.traffic.controller import SignalController
from citygrid.reading import Reading
from citygrid.settings import CitygridSettings
from citygrid.sim.traffic.metrics import trip_stats
from citygrid.sim.traffic.networks import Case, Prepared, TrafficEvaluationError, prepare
from citygrid.stream.traffic.advice import Advisor

MODES = ("fixed", "actuated", "actuated-rebuilt", "max-pressure", "citygrid-edge", "citygrid")
# Which edge policy each Python-driven mode runs; "citygrid" adds the stream's advice to the edge's rule.
POLICY = {"max-pressure": "max-pressure", "citygrid-edge": "citygrid", "citygrid": "citygrid"}
EPOCH_MS = 1_767_225_600_000  # 2026-01-01: simulated time is stamped from here
MAX_DEVICE_ID = 64  # the reading's device id limit


def device_name(tls: str) -> str:
    """The reading's device id for a light: its own id, or a stable digest of one too long for a device id."""
    if len(tls) <= MAX_DEVICE_ID:
        return tls
    return "tls-" + hashlib.sha256(tls.encode()).hexdigest()[:32]


def sumo_command(p: Prepared, mode: str, seed: int, tripinfo: Path) -> list[str]:
    """The SUMO command line of one run: the same demand, detectors and seed; the control differs."""
    c = p.case
    rebuilt = mode == "actuated-rebuilt"
    net = p.rebuilt_net if rebuilt else c.net
    adds = [*c.additionals, p.rebuilt_detectors if rebuilt else p.detectors]
    adds += [p.actuated_own] if mode == "actuated" else []
    cmd = ["sumo", "-n", str(net), "--additional-files", ",".join(str(a) for a in adds),
           "--seed", str(seed), "--begin", str(c.begin), "--end", str(c.end), "--no-step-log", "true",
           "--no-warnings", "true", "--duration-log.disable", "true", "--time-to-teleport", "300",
           "--tripinfo-output", str(tripinfo), "--tripinfo-output.write-unfinished", "true",
           "--tripinfo-output.write-undeparted", "true"]
    if c.routes:
        cmd += ["-r", ",".join(str(r) for r in c.routes)]
    return cmd


def run_one(p: Prepared, mode: str, seed: int, s: CitygridSettings, out_dir: Path) -> dict:
    """One SUMO run in this process; its trip statistics."""
    import libsumo as sim

    # The process id too: two evaluations sharing a cache must not write one file.
    tripinfo = out_dir / f"tripinfo-{p.case.name}-{mode}-{seed}-{os.getpid()}.xml"
    t0 = time.perf_counter()
    try:
        sim.start(sumo_command(p, mode, seed, tripinfo))
        try:
            if mode in POLICY:
                controlled_run(sim, s, p.case.end, POLICY[mode], advised=mode == "citygrid")
            else:
                sim.simulationStep(float(p.case.end))
        finally:
            sim.close()
    except (sim.TraCIException, sim.FatalTraCIError) as exc:
        # libsumo's own errors cannot cross the process pool: say which run failed, and why.
        raise TrafficEvaluationError(
            f"SUMO failed on {p.case.name} ({mode}, seed {seed}): {exc}") from None
    stats = trip_stats(tripinfo, p.case.begin, p.case.end)
    tripinfo.unlink()
    return {"case": p.case.name, "mode": mode, "seed": seed, "wall_s": round(time.perf_counter() - t0, 2),
            **stats}


def controlled_run(sim, s: CitygridSettings, end_s: int, policy: str, advised: bool,
                   log: list[tuple[str, float, tuple[float, ...]]] | None = None,
                   epoch_ms: int = EPOCH_MS) -> list[SignalController]:
    """Every light decided each second by the edge controller; with `advised`, the stream's advice too.

    As in the live loop, the advice made from one interval's reading is applied at the next interval
    (the intersection publishes, then takes the advice that arrived since its last reading).
    Readings are stamped `epoch_ms` plus the simulated time.
    """
    lights = [SignalController(sim, tls, s.traffic, policy, autonomous=True)
              for tls in sim.trafficlight.getIDList()]
    advisor = Advisor(s.traffic, s.stream) if advised else None
    pending: dict[str, SignalAdvice] = {}
    seq = 0
    now = begin = sim.simulation.getTime()
    while now < end_s:
        sim.simulationStep()
        now = sim.simulation.getTime()
        for light in lights:
            light.step(now)
        if advisor is None or int(now - begin) % s.traffic.interval_s:
            continue
        for light in lights:
            reading = Reading(device=device_name(light.tls), seq=seq, ts_ms=epoch_ms + int(now * 1000),
                              kind="traffic", values=light.reading_values())
            if light.tls in pending:
                light.apply(pending.pop(light.tls))
            advice = advisor.advise(reading)
            if advice is not None:
                pending[light.tls] = advice
                if log is not None:
                    log.append((light.tls, now, advice.greens_s))
        seq += 1
    return lights


def evaluate(cache_dir: Path, cases: list[Case], seeds: list[int], s: CitygridSettings,
             workers: int = 1, modes: tuple[str, ...] = MODES) -> list[dict]:
    """Every mode on every seed of every case (a fresh process per run); the runs' statistics."""
    out_dir = Path(cache_dir) / "sumo" / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for case in cases:
        p = prepare(Path(cache_dir) / "sumo", case)
        jobs += [(p, mode, seed, s, out_dir) for seed in seeds for mode in modes]
    # fork: libsumo is never started in the parent, and spawn would re-run a script's main module
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        return pool.starmap(run_one, jobs, chunksize=1)
