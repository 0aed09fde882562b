"""Counting the approaches: what the intersection's induction loops saw in the last detector period.

Each approach lane's count is named `n.<green phase>.<lane>`, so a reading
alone tells the stream side which lanes each green serves.
"""

from __future__ import annotations

from typing import Any

from citygrid.edge.traffic.phases import Layout


def interval_counts(sim: Any, layout: Layout) -> dict[str, float]:
    """Vehicles each approach lane's loop counted in the last completed detector period."""
    values = {}
    for det in sim.inductionloop.getIDList():
        lane = sim.inductionloop.getLaneID(det)
        if lane in layout.lanes:
            count = sim.inductionloop.getLastIntervalVehicleNumber(det)
            values[f"n.{layout.lanes[lane]}.{lane}"] = float(count)
    return values
