"""The edge fleet as the cluster sees it: which devices reported recently, with which model.

Devices are not scraped one by one; the stream worker derives the fleet view
from the readings themselves, so it works for devices behind NAT or offline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import Gauge

from citygrid.reading import Reading

DEVICES_ONLINE = Gauge("citygrid_fleet_devices_online",
                       "Devices whose latest reading arrived within the online window")
MODEL_INFO = Gauge("citygrid_fleet_model_info", "1 per device for the model version its readings carry",
                   ["device", "model", "version"])


@dataclass
class FleetView:
    """Last arrival time and model of every device seen by this worker."""

    online_window_s: float = 900.0
    last_seen: dict[str, float] = field(default_factory=dict)
    models: dict[str, tuple[str, str]] = field(default_factory=dict)

    def observe(self, reading: Reading, now: float | None = None) -> None:
        """Note a reading's arrival and its model version (and update the gauges)."""
        now = time.time() if now is None else now
        self.last_seen[reading.device] = now
        if reading.model is not None:
            model = (reading.model.name, reading.model.version)
            old = self.models.get(reading.device)
            if old != model:
                if old is not None:
                    MODEL_INFO.remove(reading.device, *old)
                MODEL_INFO.labels(reading.device, *model).set(1)
                self.models[reading.device] = model
        DEVICES_ONLINE.set(self.online(now))

    def online(self, now: float | None = None) -> int:
        """How many devices reported within the window."""
        now = time.time() if now is None else now
        return sum(1 for t in self.last_seen.values() if now - t <= self.online_window_s)
