"""The traffic loop end to end: SUMO intersections → real Mosquitto → ingest → real Kafka → advisor → back.

Checks that advice reached the lights (their running program is the advised one, with the
advised greens) and that each light falls back to its own plan once the advisor stops.
"""

from __future__ import annotations

import threading
import time

import libsumo as sim
import pytest
from support import as_service, enrol, wait_until

from citygrid.edge.traffic.controller import ADVISED_PROGRAM, SignalController, safe_greens
from citygrid.edge.traffic.intersection import IntersectionAgent
from citygrid.mqtt import Publisher
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.traffic.evaluation import prepare, sumo_command
from citygrid.sim.traffic.scenario import Scenario
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import read_topic
from citygrid.stream.traffic.advisor import TrafficAdvisor

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]


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


def test_advice_reaches_the_lights_and_they_fall_back_when_it_stops(live: CitygridSettings, tmp_path) -> None:
    files = prepare(live.paths.cache_dir / "sumo", Scenario(seed=1, interval_s=live.traffic.interval_s))
    step = live.traffic.interval_s
    sim.start(sumo_command(files, "citygrid", 1, 3600, tmp_path / "tripinfo.xml"))
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
            agents.append(IntersectionAgent(key, SignalController(sim, tls, live.traffic), pub,
                                            live.mqtt.commands_topic, live.traffic, authority.public_key,
                                            tmp_path / "lights"))
        for a in agents:
            a.publisher.connect()
        ingest, advisor = Running(Ingest(live)), Running(TrafficAdvisor(as_service(live, "advisor")))

        # Morning peak build-up: run 15 simulated minutes, one advice round trip per interval.
        t = 0
        for _ in range(15):
            t += step
            sim.simulationStep(float(t))
            before = [a.received for a in agents]
            for a in agents:
                a.tick(int(time.time() * 1000))
            wait_until(lambda b=before: all(a.received > n for a, n in zip(agents, b, strict=True)), 20,
                       "advice for every intersection", every_s=0.05)
        sim.simulationStep(float(t + 1))
        before = [a.received for a in agents]
        for a in agents:
            a.tick(int(time.time() * 1000))  # applies the last interval's advice
        wait_until(lambda: all(a.received > n for a, n in zip(agents, before, strict=True)), 20,
                   "the advice of the last reading", every_s=0.05)
        for a in agents:
            tls = a.controller.tls
            assert sim.trafficlight.getProgram(tls) == ADVISED_PROGRAM, f"{tls} does not run the advice"
            logic = next(lg for lg in sim.trafficlight.getAllProgramLogics(tls)
                         if lg.programID == ADVISED_PROGRAM)
            greens = [logic.phases[i].maxDur for i in a.controller.layout.green]
            assert greens == pytest.approx(a.controller.greens_s)
            # The running greens are exactly the last advice within the device's bounds.
            advised = safe_greens(a.applied[-1].greens_s, a.controller.layout.intergreens_s, live.traffic)
            assert greens == pytest.approx(advised)
            assert greens != [p.duration for i, p in enumerate(a.controller.layout.phases)
                              if i in a.controller.layout.green], f"{tls} still runs its own greens"
            # The fixed intergreens are the light's own, whatever the advice said.
            for i, p in enumerate(a.controller.layout.phases):
                if i not in a.controller.layout.green:
                    assert logic.phases[i].duration == p.duration
        # The advice follows demand: not every light got the same plan.
        assert len({a.applied[-1].greens_s for a in agents}) > 1

        readings = read_topic(live.kafka, live.kafka.readings_topic)
        assert len(readings) == 16 * len(agents)

        advisor.close()
        advisor = None
        # The first silent tick still applies the advice that was in flight; then none comes.
        for k in range(live.traffic.fallback_after + 1):
            assert all(sim.trafficlight.getProgram(a.controller.tls) == ADVISED_PROGRAM for a in agents), \
                f"a light fell back after only {k} silent intervals"
            t += step
            sim.simulationStep(float(t))
            for a in agents:
                a.tick(int(time.time() * 1000))
        for a in agents:
            assert not a.controller.advised
            assert sim.trafficlight.getProgram(a.controller.tls) == a.controller.layout.program
    finally:
        for component in (advisor, ingest):
            if component is not None:
                component.close()
        for a in agents:
            a.publisher.close()
        sim.close()
