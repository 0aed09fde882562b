"""A local fleet of simulated devices replaying SimBench profiles, for demos and tests.

Each device gets a real key (kept under <data_dir>/devices) registered in the
device registry, exactly as a deployed device would be provisioned, and keeps
its next sequence number on disk so a later run continues where it stopped.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from citygrid.edge.agent import EdgeAgent
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings, PathSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.sim.profiles import STEP_S, Profile, ProfileReplay, load_profiles
from citygrid.storage import atomic_write
from citygrid.topics import readings_topic


@dataclass(frozen=True)
class SimDevice:
    """A profile, the key of the device replaying it, and where its sequence number lives."""

    profile: Profile
    key: DeviceKey
    seq_file: Path

    def next_seq(self) -> int:
        """The sequence number the next reading gets."""
        return int(self.seq_file.read_text()) if self.seq_file.exists() else 0


def slug(name: str) -> str:
    """A file-safe device name: 'LV1.101 Load 1' → 'lv1-101-load-1'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def provision(paths: PathSettings, count: int) -> list[SimDevice]:
    """The first `count` devices (two meters per PV inverter), keys created and registered once."""
    profiles = load_profiles(paths.cache_dir)
    registry_path = paths.device_registry
    meters = [p for p in profiles if p.kind == "meter"]
    pvs = [p for p in profiles if p.kind == "pv"]
    chosen: list[Profile] = []
    while len(chosen) < count and (meters or pvs):
        for pool in (meters, meters, pvs):
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    registry = DeviceRegistry.load(registry_path)
    devices = []
    for p in chosen:
        path = paths.data_dir / "devices" / f"{slug(p.name)}.key"
        if path.exists():
            key = DeviceKey.load(path)
        else:
            key = DeviceKey.generate()
            key.save(path)
        registry.add(key.public_key)
        devices.append(SimDevice(p, key, path.with_suffix(".seq")))
    registry.save(registry_path)
    return devices


def replay_clock(steps: int, now_s: float | None = None) -> tuple[int, int]:
    """(start_ms, start_step): `steps` quarter-hours ending now, at the same time of year
    in the profile, so PV is dark at night and loads peak when they really do."""
    now_s = time.time() if now_s is None else now_s
    start_s = int(now_s // STEP_S * STEP_S) - steps * STEP_S
    year = time.gmtime(start_s).tm_year
    year_start = int(time.mktime(time.strptime(f"{year}-01-01", "%Y-%m-%d"))) - time.timezone
    return start_s * 1000, (start_s - year_start) // STEP_S


def replay_fleet(s: CitygridSettings, devices: list[SimDevice], steps: int) -> int:
    """Every device replays `steps` readings concurrently; returns how many the broker acked."""
    start_ms, start_step = replay_clock(steps)

    def run(d: SimDevice) -> int:
        pub = Publisher(s.mqtt, client_id=f"edge-{d.key.device_id}")
        pub.connect()
        try:
            driver = ProfileReplay(d.profile, start_ms, start_step, steps)
            agent = EdgeAgent(d.key, driver, pub, next_seq=d.next_seq())
            sent = agent.run()
            atomic_write(d.seq_file, str(agent.next_seq))  # a crash leaves the old number, not none
            return sent
        finally:
            pub.close()

    with ThreadPoolExecutor(max(1, len(devices))) as pool:
        return sum(pool.map(run, devices))


def send_bad_readings(s: CitygridSettings, victim: DeviceKey) -> int:
    """Publish a malformed payload and a reading forged in `victim`'s name; return how many."""
    forger = DeviceKey.generate()
    reading = Reading(device=victim.device_id, seq=10**9, ts_ms=int(time.time() * 1000),
                      kind="meter", values={"p_kw": 99.0})
    forged = SignedReading(reading.body(), sign_reading(
        reading.model_copy(update={"device": forger.device_id}), forger).signature)
    pub = Publisher(s.mqtt, client_id=f"forger-{forger.device_id}")
    pub.connect()
    try:
        topic = readings_topic(s.mqtt.readings_topic, "d1", victim.device_id)
        pub.publish(topic, b"\x92not a reading")
        pub.publish(topic, forged.encode())
    finally:
        pub.close()
    return 2
