"""The balancing report (reports/balancing.md + .json): per grid, each scenario's feeder peak,
imbalance and self-consumption, as `citygrid stream balance` measured them (sim/balancing.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from citygrid.storage import atomic_write

COLUMNS = (("peak_import_kw", "peak import kW", "{:.1f}"), ("peak_export_kw", "peak export kW", "{:.1f}"),
           ("p99_import_kw", "P99 import kW", "{:.1f}"), ("traded_kwh", "traded kWh", "{:.0f}"),
           ("imbalance_kwh", "imbalance abs(delivered - traded) kWh", "{:.0f}"),
           ("imbalance_share", "imbalance / exchanged", "{:.1%}"),
           ("shortfall_kwh", "shortfall kWh", "{:.0f}"),
           ("flagged_share", "traded intervals flagged short", "{:.1%}"),
           ("self_consumption", "PV self-consumption", "{:.1%}"))


def _cell(fmt: str, v: float) -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else fmt.format(v)


def table(results: dict[str, dict]) -> list[str]:
    """The markdown table: one row per grid and scenario."""
    lines = ["| grid | scenario | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|" + "---|" * (len(COLUMNS) + 2)]
    for grid, r in results.items():
        for name, m in r["scenarios"].items():
            lines.append(f"| {grid} | {name} | " + " | ".join(_cell(f, m[k]) for k, _, f in COLUMNS) + " |")
    return lines


def write_report(results: dict[str, dict], out: Path, notes: list[str]) -> Path:
    """Write `out` (markdown) and its .json twin; returns the markdown path."""
    out = Path(out)
    grids = [f"- {g}: {r['participants']} participants (one per bus), {r['batteries']} batteries, "
             f"{r['battery_kwh']:.0f} kWh in all" for g, r in results.items()]
    md = ["# Balancing: uncertainty-aware bids and battery agents vs point bids", "",
          *(f"- {n}" for n in notes), "", "## Grids", "", *grids, "", "## Results", "", *table(results), ""]
    atomic_write(out, "\n".join(md))
    atomic_write(out.with_suffix(".json"), json.dumps({"notes": notes, "grids": results}, indent=1))
    return out
