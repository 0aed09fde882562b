"""Fixtures for the edge agent's integration tests: a Mosquitto of the test's own (so it can be
stopped and restarted without touching the shared broker) and an in-process ingest."""

from __future__ import annotations

import getpass
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port, wait_until

from citygrid.devtools.local_servers import port_open
from citygrid.settings import CitygridSettings
from citygrid.stream.ingest import Ingest, prepare_session
from citygrid.stream.kafka_topics import read_topic


@dataclass
class OwnBroker:
    """A Mosquitto on a free port with persistence, so queued sessions survive a restart."""

    dir: Path
    port: int
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
            f"persistence true\npersistence_location {self.dir / 'data'}/\n"
            "max_queued_messages 2000000\nmax_inflight_messages 1000\nlog_dest stdout\n")
        logf = open(self.dir / "log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_until(self._listening, 10, "the test's mosquitto to listen", every_s=0.05)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"test mosquitto exited: {(self.dir / 'log').read_text()[-800:]}")
        return port_open("127.0.0.1", self.port)

    def stop(self) -> None:
        """Graceful stop: Mosquitto writes its persistence file on SIGTERM."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    """A broker this test may stop and restart."""
    broker = OwnBroker(tmp_path / "mosquitto", free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def edge_live(live: CitygridSettings, own_broker: OwnBroker) -> CitygridSettings:
    """`live` settings pointed at the test's own broker, with the ingest's session prepared there."""
    s = live.model_copy(update={"mqtt": live.mqtt.model_copy(update={"port": own_broker.port})})
    prepare_session(s)
    return s


@pytest.fixture
def ingest(edge_live: CitygridSettings) -> Iterator[Ingest]:
    """The real ingest, in a thread, from the test broker to the test's Kafka topics."""
    stop = threading.Event()
    ing = Ingest(edge_live)
    thread = threading.Thread(target=ing.run, args=(stop,), daemon=True)
    thread.start()
    yield ing
    stop.set()
    thread.join(60)


def kafka_seqs(s: CitygridSettings, device: str) -> list[int]:
    """Every seq of `device` in the readings topic, duplicates included."""
    from citygrid.reading import SignedReading

    return [SignedReading.decode(r.value).reading().seq
            for r in read_topic(s.kafka, s.kafka.readings_topic) if r.key == device.encode()]


def wait_for_seqs(s: CitygridSettings, device: str, n: int, timeout_s: float = 90) -> list[int]:
    """Poll Kafka until `n` distinct seqs of the device arrived; return all seqs seen, duplicates included."""
    seen: list[int] = []

    def enough() -> bool:
        seen[:] = kafka_seqs(s, device)
        return len(set(seen)) >= n

    wait_until(enough, timeout_s, f"{n} distinct readings of {device} in Kafka")
    return seen


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real models (few trees, few profiles) trained once per session: versions 1 and 2."""
    from citygrid.sim.train_models import train

    out, cache = tmp_path_factory.mktemp("models"), CitygridSettings().paths.cache_dir
    v1 = train(cache, out, version="1", trees=4, max_profiles=2)
    v2 = train(cache, out, version="2", trees=6, max_profiles=2)
    return {"v1": v1["load_nowcast"], "v2": v2["load_nowcast"]}
