"""Fixtures for the edge agent's integration tests: a Mosquitto of the test's own (so it can be
stopped and restarted without touching the shared broker) and an in-process ingest."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import as_service, free_port, wait_until

from citygrid.devtools.local_servers import mosquitto_server
from citygrid.settings import CitygridSettings
from citygrid.stream.ingest import Ingest, prepare_session
from citygrid.stream.kafka_topics import read_topic


@dataclass
class OwnBroker:
    """The local platform's Mosquitto (TLS only, identities from the dynamic-security plugin) on a free
    port with its own files, so queued sessions survive a restart and stopping it touches no one else."""

    dir: Path
    port: int

    def __post_init__(self) -> None:
        self.server = mosquitto_server(CitygridSettings(), self.port, self.dir)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        """Graceful stop: Mosquitto writes its persistence file on SIGTERM."""
        self.server.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    """A broker this test may stop and restart."""
    broker = OwnBroker(tmp_path / "mosquitto", free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def edge_live(live: CitygridSettings, own_broker: OwnBroker) -> CitygridSettings:
    """`live` settings pointed at the test's own broker as its ingest, with the session prepared there."""
    s = as_service(live.model_copy(update={"mqtt": live.mqtt.model_copy(update={"port": own_broker.port})}),
                   "ingest")
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

    try:
        wait_until(enough, timeout_s, f"{n} distinct readings of {device} in Kafka")
    except AssertionError as exc:
        missing = sorted(set(range(n)) - set(seen))
        raise AssertionError(f"{exc}: {len(set(seen))} arrived; missing seqs {missing[:20]}"
                             f"{' …' if len(missing) > 20 else ''}") from None
    return seen


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real models (few trees, few profiles) trained once per session: versions 1 and 2."""
    from citygrid.sim.train_models import train

    out, cache = tmp_path_factory.mktemp("models"), CitygridSettings().paths.cache_dir
    v1 = train(cache, out, version="1", trees=4, max_profiles=2)
    v2 = train(cache, out, version="2", trees=6, max_profiles=2)
    return {"v1": v1["load_nowcast"], "v2": v2["load_nowcast"]}
