"""The traffic loop end to end: SUMO intersections → real Mosquitto → ingest → real Kafka → advisor → back.

Each light decides every second on its own (the edge controller) and publishes its demand per green
each interval; the advisor's signed advice comes back over MQTT and bounds its greens. Checks that the
advice reached every light within the device's bounds, that the loop through the brokers takes exactly
the decisions of the in-process evaluation (same readings, same River forecasts, same advice, same
traffic), and that a light drops the advice once the advisor stops.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import replace
from pathlib import Path

import libsumo as sim
import pytest
from support import as_service, enrol, wait_until

from citygrid.edge.traffic.controller import ADVISED_PROGRAM, SignalController, safe_greens
from citygrid.edge.traffic.intersection import IntersectionAgent
from citygrid.mqtt import Publisher
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.traffic.evaluation import controlled_run, sumo_command
from citygrid.sim.traffic.networks import Case, grid_case, prepare
from citygrid.sim.traffic.scenario import Scenario
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import read_topic
from citygrid.stream.traffic.advisor import TrafficAdvisor

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]
INTERVALS = 12


class Running:
    """A component's run(stop) on a thread."""

    def __init__(self, component) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=component.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "a loop component did not stop"


def _in_process(case: Case, s: CitygridSettings, out: Path, epoch_ms: int) -> tuple[list, list[float]]:
    """The evaluation's own loop on the same case (in a child: libsumo runs one simulation per process)."""
    sim.start(sumo_command(prepare(out, case), "citygrid", 1, out / "twin-trips.xml"))
    try:
        log: list = []
        controlled_run(sim, s, case.end, "citygrid", advised=True, log=log, epoch_ms=epoch_ms)
        return log, _halting()
    finally:
        sim.close()


def _halting() -> list[float]:
    return [float(sum(sim.lane.getLastStepHaltingNumber(ln) for ln in sim.lane.getIDList()))]


def test_advice_through_the_brokers_matches_the_in_process_loop_and_stops_cleanly(
        live: CitygridSettings, tmp_path: Path) -> None:
    step = live.traffic.interval_s
    case = grid_case(live.paths.cache_dir / "sumo", Scenario(seed=1, interval_s=step), "grid-light")
    case = replace(case, end=INTERVALS * step)
    # Simulated time is stamped from yesterday's midnight: the ingest accepts it, both loops share it.
    epoch_ms = (int(time.time()) // 86400 - 1) * 86_400_000
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        twin_log, twin_halting = pool.apply(_in_process, (case, live, tmp_path, epoch_ms))

    sim.start(sumo_command(prepare(tmp_path, case), "citygrid", 1, tmp_path / "trips.xml"))
    agents: list[IntersectionAgent] = []
    ingest = advisor = None
    authority = DeviceKey.generate()
    authority.save(tmp_path / "command.key")
    live = live.model_copy(update={"traffic": live.traffic.model_copy(
        update={"command_key_file": tmp_path / "command.key"})})
    try:
        for tls in sim.trafficlight.getIDList():
            key = DeviceKey.generate()
            device = enrol(live, key, live.traffic.district, "traffic")
            pub = Publisher(device.mqtt, client_id=f"edge-{key.device_id}")
            light = SignalController(sim, tls, live.traffic, autonomous=True)
            agents.append(IntersectionAgent(key, light, pub, live.mqtt.commands_topic, live.traffic,
                                            authority.public_key, tmp_path / "lights"))
        for a in agents:
            a.publisher.connect()
        ingest, advisor = Running(Ingest(live)), Running(TrafficAdvisor(as_service(live, "advisor")))

        # One advice round trip per interval; each light runs second by second in between.
        for _ in range(INTERVALS):
            _run_interval(agents, step)
            now = sim.simulation.getTime()
            before = [a.received for a in agents]
            for a in agents:
                a.tick(epoch_ms + int(now * 1000))
            wait_until(lambda b=before: all(a.received > n for a, n in zip(agents, b, strict=True)), 20,
                       "advice for every intersection", every_s=0.05)
        halting = _halting()

        # The same decisions as the in-process loop (whose last advice per light is still in flight):
        # the brokers add transport and signatures, nothing else.
        for a in agents:
            twin = [greens for tls, _, greens in twin_log if tls == a.controller.tls][:-1]
            assert [adv.greens_s for adv in a.applied] == twin
        assert halting == twin_halting
        for a in agents:
            tls = a.controller.tls
            assert a.controller.advised and sim.trafficlight.getProgram(tls) == ADVISED_PROGRAM
            # The running ceilings are exactly the last applied advice within the device's bounds.
            advised = safe_greens(a.applied[-1].greens_s, live.traffic)
            assert a.controller.greens_s == advised
        assert len(read_topic(live.kafka, live.kafka.readings_topic)) == INTERVALS * len(agents)

        advisor.close()
        advisor = None
        # The first silent tick still applies the advice that was in flight; then none comes.
        for k in range(live.traffic.fallback_after + 1):
            assert all(a.controller.advised for a in agents), f"advice dropped after {k} silent ticks"
            _run_interval(agents, step)
            for a in agents:
                a.tick(epoch_ms + int(sim.simulation.getTime() * 1000))
        for a in agents:  # an autonomous light goes on deciding alone, without the advised ceilings
            assert not a.controller.advised
            assert a.controller.greens_s == [live.traffic.max_green_s] * len(a.controller.layout.green)
    finally:
        for component in (advisor, ingest):
            if component is not None:
                component.close()
        for a in agents:
            a.publisher.close()
        sim.close()


def _run_interval(agents: list[IntersectionAgent], step: int) -> None:
    for _ in range(step):
        sim.simulationStep()
        now = sim.simulation.getTime()
        for a in agents:
            a.step(now)
