"""A local fleet of simulated devices replaying SimBench profiles, for demos and tests.

Each device gets a real key (kept under <data_dir>/devices) and is enrolled (registry entry with
kind, district and owner; its own broker identity) exactly as a deployed device would be, and keeps
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
from citygrid.ops.enroll import Credentials, enroll_device
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.profiles import STEP_S, Profile, ProfileReplay, load_profiles
from citygrid.storage import atomic_write
from citygrid.topics import readings_topic

DISTRICT = "d1"  # the simulated feeder every fleet device is enrolled in
OWNER = "citygrid-sim"


@dataclass(frozen=True)
class SimDevice:
    """A profile, the key of the device replaying it, and where its sequence number lives."""

    profile: Profile
    key: DeviceKey
    seq_file: Path
    creds: Credentials  # its broker identity
    district: str = DISTRICT

    def next_seq(self) -> int:
        """The sequence number the next reading gets."""
        return int(self.seq_file.read_text()) if self.seq_file.exists() else 0


def slug(name: str) -> str:
    """A file-safe device name: 'LV1.101 Load 1' → 'lv1-101-load-1'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def provision(s: CitygridSettings, count: int) -> list[SimDevice]:
    """The first `count` devices (two meters per PV inverter), keys created once, each enrolled (with a
    fresh broker password) in district `DISTRICT`."""
    paths = s.paths
    profiles = load_profiles(paths.cache_dir)
    meters = [p for p in profiles if p.kind == "meter"]
    pvs = [p for p in profiles if p.kind == "pv"]
    chosen: list[Profile] = []
    while len(chosen) < count and (meters or pvs):
        for pool in (meters, meters, pvs):
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    devices = []
    for p in chosen:
        path = paths.data_dir / "devices" / f"{slug(p.name)}.key"
        if path.exists():
            key = DeviceKey.load(path)
        else:
            key = DeviceKey.generate()
            key.save(path)
        creds = enroll_device(s, key.public_key, p.kind, DISTRICT, OWNER)
        devices.append(SimDevice(p, key, path.with_suffix(".seq"), creds))
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
        pub = Publisher(d.creds.apply(s.mqtt), client_id=d.creds.client_id)
        pub.connect()
        try:
            driver = ProfileReplay(d.profile, start_ms, start_step, steps)
            agent = EdgeAgent(d.key, driver, pub, d.district, next_seq=d.next_seq())
            sent = agent.run()
            atomic_write(d.seq_file, str(agent.next_seq))  # a crash leaves the old number, not none
            return sent
        finally:
            pub.close()

    with ThreadPoolExecutor(max(1, len(devices))) as pool:
        return sum(pool.map(run, devices))


def send_bad_readings(s: CitygridSettings, victim: SimDevice) -> int:
    """As a compromised `victim` (its own broker identity: nobody else may publish on its topic), publish
    a malformed payload and a reading in its name signed by another key; return how many."""
    forger = DeviceKey.generate()
    reading = Reading(device=victim.key.device_id, seq=10**9, ts_ms=int(time.time() * 1000),
                      kind=victim.profile.kind, values={"p_kw": 99.0})
    forged = SignedReading(reading.body(), sign_reading(
        reading.model_copy(update={"device": forger.device_id}), forger).signature)
    pub = Publisher(victim.creds.apply(s.mqtt), client_id=victim.creds.client_id)
    pub.connect()
    try:
        topic = readings_topic(s.mqtt.readings_topic, victim.district, victim.key.device_id)
        pub.publish(topic, b"\x92not a reading")
        pub.publish(topic, forged.encode())
    finally:
        pub.close()
    return 2
