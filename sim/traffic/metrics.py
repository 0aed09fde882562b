"""Trip statistics from SUMO's tripinfo output, as RESCO measures them.

RESCO's average delay is each vehicle's timeLoss plus its departDelay (the time
it waited to be inserted), over every vehicle of the demand: those still driving
at the end count with their loss so far (`--tripinfo-output.write-unfinished`)
and those never inserted with the whole wait (`write-undeparted`), so a
controller that gridlocks the entrances cannot look good by keeping vehicles out.
"""

from __future__ import annotations

import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

METRICS = ("avg_delay_s", "mean_waiting_s", "mean_trip_s", "throughput_veh_h")


def trip_stats(tripinfo: Path, begin_s: float, end_s: float) -> dict:
    """Per-vehicle means over every vehicle of the demand in the window, and the arrivals per hour."""
    delays, waits, trips = [], [], []
    arrived = 0
    for t in ET.parse(tripinfo).getroot().iter("tripinfo"):
        depart = float(t.get("depart"))
        depart_delay = float(t.get("departDelay", 0.0))
        if depart < 0:  # never inserted: it waited from its planned departure to the end
            depart_delay = max(depart_delay, 0.0)
        delays.append(float(t.get("timeLoss", 0.0)) + depart_delay)
        waits.append(float(t.get("waitingTime", 0.0)))
        trips.append(float(t.get("duration", 0.0)) + depart_delay)
        if float(t.get("arrival", -1)) >= 0:
            arrived += 1
    if not delays:
        raise ValueError(f"{tripinfo} has no trips; the scenario inserted no vehicles")
    return {"vehicles": len(delays), "avg_delay_s": statistics.fmean(delays),
            "mean_waiting_s": statistics.fmean(waits), "mean_trip_s": statistics.fmean(trips),
            "throughput_veh_h": arrived * 3600.0 / max(end_s - begin_s, 1.0)}
