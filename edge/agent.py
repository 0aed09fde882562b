"""The edge agent loop: read a driver, sign each reading, publish it.

Sequence numbers are per device and strictly increasing, which is what lets
the ingest reject replays and duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

from citygrid.edge.drivers import Driver
from citygrid.edge.publisher import Publisher, readings_topic
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.signing import DeviceKey


@dataclass
class EdgeAgent:
    """One device: its key, its driver and its broker connection."""

    key: DeviceKey
    driver: Driver
    publisher: Publisher
    district: str = "d1"
    next_seq: int = 0

    def make_reading(self, ts_ms: int, values: dict[str, float]) -> SignedReading:
        """Stamp, number and sign one measurement."""
        reading = Reading(device=self.key.device_id, seq=self.next_seq, ts_ms=ts_ms,
                          kind=self.driver.kind, values=values)
        self.next_seq += 1
        return sign_reading(reading, self.key)

    def run(self, limit: int | None = None) -> int:
        """Publish measurements until the driver ends (or `limit`); return how many were sent."""
        topic = readings_topic(self.publisher.settings, self.district, self.key.device_id)
        pending = []
        sent = 0
        for ts_ms, values in self.driver.measurements():
            if limit is not None and sent >= limit:
                break
            pending.append(self.publisher.publish_async(topic, self.make_reading(ts_ms, values).encode()))
            sent += 1
        for info in pending:
            info.wait_for_publish(30)
        return sent
