"""A simulated fleet for the scale benchmark: many enrolled devices, their signed readings sent on a schedule.

Devices are enrolled in the registry directly (key, kind, district, owner: what the ingest, workers and
anchorer check), not one broker identity each: 100,000 identities on one broker, each with its own TLS
connection, do not fit this machine, and the ingest's per-reading work does not depend on who published.
So a few connections publish on the devices' behalf as one gateway identity, whose role may publish on
every device's readings topic (a device's own role allows only its own: ops.enroll.device_acls). Each
reading is still signed by its device's own ed25519 key at the moment it is sent, so its `ts_ms` is
the send time the end-to-end latencies start from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from citygrid.mqtt import mqtt_client
from citygrid.ops.enroll import BrokerAdmin, Credentials
from citygrid.reading import Reading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.topics import readings_topic

DEVICES_PER_DISTRICT = 500  # a feeder's worth of meters: one group aggregate each
KIND = "meter"
OWNER = "scale-bench"


@dataclass
class Fleet:
    """`keys[d]` signs device d's readings; `sent[(device, seq)]` is when each was signed and sent (ms)."""

    keys: list[DeviceKey]
    sent: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def enrol(cls, devices: int, registry_path: Path) -> Fleet:
        """`devices` new keys, each enrolled (kind, district, owner) in the registry at `registry_path`."""
        keys = [DeviceKey.generate() for _ in range(devices)]
        registry = DeviceRegistry.load(registry_path)
        for d, k in enumerate(keys):
            registry.add(k.public_key, kind=KIND, district=district(d), owner=OWNER)
        registry.save(registry_path)
        return cls(keys)

    def reading(self, d: int, seq: int, now_ms: int) -> tuple[str, bytes]:
        """(MQTT topic, signed envelope) of device d's reading `seq`, stamped `now_ms`."""
        key = self.keys[d]
        r = Reading(device=key.device_id, seq=seq, ts_ms=now_ms, kind=KIND,
                    values={"p_kw": round(0.2 + (d * 7 + seq * 13) % 50 / 10, 3)})
        self.sent[(key.device_id, seq)] = now_ms
        return district(d), sign_reading(r, key).encode()


def district(d: int) -> str:
    """The district (feeder) device d is enrolled in."""
    return f"f{d // DEVICES_PER_DISTRICT}"


def enrol_gateway(s: CitygridSettings, name: str) -> Credentials:
    """The benchmark's publishing identity: may publish on every device's readings topic, nothing else."""
    creds = Credentials.new(name, name)
    acls = [{"acltype": "publishClientSend", "topic": f"{s.mqtt.readings_topic}/#", "priority": 0,
             "allow": True}]
    with BrokerAdmin(s.mqtt) as admin:
        admin.put_identity(creds, f"bench-{name}", acls, "scale benchmark gateway")
    return creds


class Gateway:
    """`connections` MQTT connections under gateway identities, publishing at QoS 1 round robin."""

    def __init__(self, s: CitygridSettings, connections: int) -> None:
        self.clients: list[mqtt.Client] = []
        for c in range(connections):
            creds = enrol_gateway(s, f"{s.mqtt.ingest_client_id}-gw{c}")
            client = mqtt_client(creds.apply(s.mqtt), creds.client_id, clean_session=True)
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            client.connect(s.mqtt.host, s.mqtt.port, keepalive=60)
            client.loop_start()
            self.clients.append(client)
        self.root = s.mqtt.readings_topic
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def send(self, fleet: Fleet, readings_per_device: int, rate_per_s: float) -> float:
        """Every device's readings, spread evenly at `rate_per_s` (device order interleaved, so one
        device's readings are a fleet's round apart); returns how late the last was sent (s)."""
        n, devices = len(fleet.keys) * readings_per_device, len(fleet.keys)
        t0, late = time.monotonic(), 0.0
        for i in range(n):
            seq, d = divmod(i, devices)
            if (delay := t0 + i / rate_per_s - time.monotonic()) > 0:
                time.sleep(delay)
            else:
                late = -delay
            dist, payload = fleet.reading(d, seq, int(time.time() * 1000))
            topic = readings_topic(self.root, dist, fleet.keys[d].device_id)
            self.infos.append(self.clients[i % len(self.clients)].publish(topic, payload, qos=1))
        return late

    def wait_acked(self, timeout_s: float = 120) -> None:
        """Until the broker acknowledged every reading sent."""
        deadline = time.monotonic() + timeout_s
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        missing = sum(not i.is_published() for i in self.infos)
        if missing:
            raise RuntimeError(f"the broker did not acknowledge {missing} readings")
        self.infos.clear()

    def close(self) -> None:
        """Disconnect every connection."""
        for client in self.clients:
            client.disconnect()
            client.loop_stop()
