"""Induction-loop driver: replays the vehicle counts of one SUMO E1 detector as a traffic sensor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citygrid.edge.errors import SensorError
from citygrid.sim.traffic.scenario import detector_counts


@dataclass
class SumoLoopReplay:
    """One loop's counts per interval, stamped from `start_ms` one interval apart."""

    detector: str
    counts: np.ndarray
    start_ms: int
    interval_s: int = 60
    kind: str = "traffic"

    @classmethod
    def from_scenario(cls, cache_dir: Path, detector: str, start_ms: int, seed: int = 1,
                      hours: float = 2.0, interval_s: int = 60) -> SumoLoopReplay:
        """The driver for one detector of the cached scenario (built and simulated on first use)."""
        counts = detector_counts(cache_dir, seed, hours, interval_s)
        if detector not in counts:
            raise SensorError(f"no detector {detector!r} in the scenario; pick one of {sorted(counts)[:4]}…")
        return cls(detector, counts[detector], start_ms, interval_s)

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """Vehicles per interval and the hourly flow it implies."""
        per_hour = 3600.0 / self.interval_s
        for i, n in enumerate(self.counts):
            yield self.start_ms + i * self.interval_s * 1000, {
                "vehicles": float(n), "flow_veh_h": float(n) * per_hour}
