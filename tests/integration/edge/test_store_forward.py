"""Zero loss through a broker outage and through a SIGKILL of the agent, counted in Kafka after
the real ingest's dedupe."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import enrol, wait_until

import citygrid
from citygrid.devtools.processes import spawn
from citygrid.edge.agent import EdgeAgent
from citygrid.edge.outbox_sender import UNROUTED
from citygrid.edge.store_forward import Outbox
from citygrid.mqtt import Publisher
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.profiles import ProfileReplay, load_profiles
from citygrid.stream.ingest import Ingest

from .conftest import OwnBroker, wait_for_seqs

pytestmark = pytest.mark.timeout(240)


@dataclass
class Paced:
    """A driver that takes `period_s` per measurement, like a real sensor, so an outage falls mid-stream."""

    inner: ProfileReplay
    period_s: float
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def kind(self) -> str:
        return self.inner.kind

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        for m in self.inner.measurements():
            if self.stop.is_set():
                return
            time.sleep(self.period_s)
            yield m


def register(s: CitygridSettings) -> tuple[DeviceKey, CitygridSettings]:
    """A new meter enrolled on `s`'s broker: its key, and `s` connecting as it."""
    key = DeviceKey.generate()
    return key, enrol(s, key)


def meter() -> ProfileReplay:
    profile = next(p for p in load_profiles(CitygridSettings().paths.cache_dir) if p.kind == "meter")
    return ProfileReplay(profile, int(time.time() * 1000) - 20 * 86400 * 1000, 96 * 150)


def connected_meter(s: CitygridSettings, n: int, tmp_path: Path
                    ) -> tuple[DeviceKey, ProfileReplay, Outbox, Publisher]:
    """A new meter enrolled on `s`'s broker that will make `n` readings: its key, driver, outbox and
    connected publisher."""
    key, device = register(s)
    driver = meter()
    driver.steps = n
    pub = Publisher(device.mqtt, client_id=f"edge-{key.device_id}")
    pub.connect()
    return key, driver, Outbox(tmp_path / "outbox.db"), pub


def test_broker_outage_loses_and_duplicates_nothing(edge_live, own_broker: OwnBroker, ingest,
                                                    tmp_path: Path) -> None:
    s, n = edge_live, 600
    key, driver, outbox, pub = connected_meter(s, n, tmp_path)
    agent = EdgeAgent(key, Paced(driver, 0.006), pub, outbox=outbox)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(agent.run(drain_timeout_s=90)))
    thread.start()
    time.sleep(1.0)
    own_broker.stop()
    time.sleep(0.5)
    held_during_outage = len(outbox)
    time.sleep(2.5)
    own_broker.start()
    thread.join(120)
    pub.close()
    assert result == [n]
    assert held_during_outage > 0, "the outage fell outside the stream; nothing was held on disk"
    assert len(outbox) == 0
    seqs = wait_for_seqs(s, key.device_id, n)
    assert sorted(seqs) == list(range(n)), f"missing {sorted(set(range(n)) - set(seqs))[:10]}"


def test_sigkill_mid_stream_loses_and_duplicates_nothing(edge_live, ingest, tmp_path: Path) -> None:
    s, n = edge_live, 1200
    key, device = register(s)
    key.save(tmp_path / "device.key")
    box = tmp_path / "outbox.db"
    env = device.as_env()
    # The agent imports citygrid from where this test does (a checkout's sources or the installed wheel).
    env["PYTHONPATH"] = str(Path(citygrid.__file__).parent.parent)
    args = ["edge", "simulate", "--key", str(tmp_path / "device.key"), "--outbox", str(box),
            "--until-seq", str(n), "--start-ms", str(int(time.time() * 1000) - 20 * 86400 * 1000)]
    first = spawn(args, env, tmp_path / "agent1.log")

    def stored_next_seq() -> int:
        if not box.exists():
            return 0
        with sqlite3.connect(box) as db:
            try:
                row = db.execute("SELECT v FROM meta WHERE k='next_seq'").fetchone()
            except sqlite3.OperationalError:
                return 0
        return row[0] if row else 0

    def quarter_done() -> bool:
        assert first.poll() is None, (tmp_path / "agent1.log").read_text()[-2000:]
        return stored_next_seq() >= n // 4

    wait_until(quarter_done, 60, "the agent to store a quarter of its readings", every_s=0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = stored_next_seq()
    assert killed_at < n, "the agent finished before it was killed; the kill proved nothing"
    second = spawn(args, env, tmp_path / "agent2.log")
    assert second.wait(120) == 0, (tmp_path / "agent2.log").read_text()[-2000:]
    seqs = wait_for_seqs(s, key.device_id, n)
    assert sorted(seqs) == list(range(n)), f"missing {sorted(set(range(n)) - set(seqs))[:10]}"


def test_readings_no_subscription_took_stay_in_the_outbox_until_the_ingest_subscribes(
        edge_live, own_broker: OwnBroker, tmp_path: Path) -> None:
    """Mosquitto 2.0.11 does not restore the ingest's shared subscription from its persistence file: after
    a restart, until the ingest subscribes again, the broker acknowledges readings with MQTT 5's "no
    matching subscribers" and keeps none of them. The agent must keep them and send them again."""
    s, n = edge_live, 20
    own_broker.stop()
    own_broker.start()  # the ingest's session is back, its $share subscription is not
    key, driver, outbox, pub = connected_meter(s, n, tmp_path)
    unrouted_before = UNROUTED._value.get()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(EdgeAgent(key, driver, pub, outbox=outbox)
                                                           .run(drain_timeout_s=90)))
    thread.start()
    wait_until(lambda: UNROUTED._value.get() > unrouted_before, 30, "a PUBACK with no matching subscribers")
    assert len(outbox) > 0, "readings the broker kept for nobody were deleted from the outbox"
    stop = threading.Event()
    ingest = threading.Thread(target=Ingest(s).run, args=(stop,), daemon=True)
    ingest.start()  # subscribes again: the held readings now reach it
    try:
        thread.join(120)
        assert result == [n]
        assert len(outbox) == 0
        seqs = wait_for_seqs(s, key.device_id, n)
        assert set(seqs) == set(range(n))
    finally:
        pub.close()
        stop.set()
        ingest.join(60)
