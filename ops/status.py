"""`citygrid edge status`: each device's release, the model its readings carry, and its last reading.

Two sources, each for what it alone knows: the device itself (over SSH: the release `current` points
at, and whether its agent runs) and Kafka's readings topic (its newest reading there, which passed the
ingest's checks, and the model version that scored it). A device that cannot be reached is reported
as such, never skipped.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from citygrid.ops.device_config import Device
from citygrid.ops.errors import DeployError
from citygrid.ops.remote import Remote, agent_running
from citygrid.reading import Reading, reading_or_none
from citygrid.settings import KafkaSettings
from citygrid.signing import DeviceKey


@dataclass(frozen=True)
class DeviceStatus:
    """One row of `citygrid edge status`."""

    name: str
    device_id: str
    release: str | None  # None: nothing installed
    release_model: str | None  # the model the release ships ("name version")
    agent: str  # running, stopped, or why the device could not be reached
    last_seq: int | None = None
    last_ts_ms: int | None = None
    model: str | None = None  # the model that scored its last reading

    def age_s(self, now_ms: int | None = None) -> float | None:
        """Seconds since its last reading was measured."""
        if self.last_ts_ms is None:
            return None
        return ((now_ms or int(time.time() * 1000)) - self.last_ts_ms) / 1000


def last_readings(k: KafkaSettings, per_partition: int = 20000) -> dict[str, Reading]:
    """The newest reading of each device among the last `per_partition` records of each partition."""
    from citygrid.stream.kafka_topics import read_tail

    newest: dict[str, Reading] = {}
    for record in read_tail(k, k.readings_topic, per_partition):
        r = reading_or_none(record.value)
        if r is not None and (r.device not in newest or r.seq > newest[r.device].seq):
            newest[r.device] = r
    return newest


def device_status(d: Device, known_hosts: Path | None, readings: dict[str, Reading]) -> DeviceStatus:
    """What the device says (release, agent) joined with its newest reading in Kafka."""
    device_id = DeviceKey.load(d.device_key).device_id
    release, shipped, agent = None, None, "unreachable"
    try:
        r = Remote(d, known_hosts)
        try:
            manifest = r.read(f"{d.root}/current/release.json")
            if manifest is None:
                release = r.sh(f"readlink {shlex.quote(d.root)}/current || true").strip().rsplit("/", 1)[-1]
            else:
                info = json.loads(manifest)
                release, shipped = info.get("release"), info.get("model")
            agent = "running" if agent_running(r, d.root) else "stopped"
        finally:
            r.close()
    except DeployError as exc:
        agent = f"unreachable: {str(exc)[:120]}"
    last = readings.get(device_id)
    model = f"{last.model.name} {last.model.version}" if last and last.model else None
    return DeviceStatus(d.name, device_id, release or None, shipped, agent,
                        last.seq if last else None, last.ts_ms if last else None, model)
