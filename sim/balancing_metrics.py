"""The balancing report's figures, tallied interval by interval (pure numpy, no market, no grid).

Per interval and participant the simulation hands over three numbers, all in Wh, export positive:
its exchange with the grid as the meter shows it (after its battery, if any), what it traded (sold -
bought) and its PV generation; plus how many of its trades the delivery check judged and flagged.

- feeder peak: the largest import (and export) of all participants together in one interval, in kW
  (Wh x 3600 / interval): what the transformer carries;
- imbalance: exchange - traded, summed in absolute value (energy the grid had to balance) and as
  signed sums; the delivery check's shortfall is the part that breaks a promise (a seller exporting
  less than it sold, a buyer importing less than it bought);
- self-consumption: the share of PV generation not exported, over the participants that own PV
  (export counted up to the interval's own generation: a battery discharging into a trade is not PV).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tally:
    """Running sums over the simulated intervals of one grid and scenario."""

    interval_s: int
    intervals: int = 0
    peak_import_wh: float = 0.0
    peak_export_wh: float = 0.0
    imbalance_abs_wh: float = 0.0
    imbalance_signed_wh: float = 0.0
    traded_wh: float = 0.0  # energy bought and sold by the participants (each side once: |traded|)
    exchanged_wh: float = 0.0  # |exchange| summed: the energy the participants moved through the grid
    shortfall_wh: float = 0.0
    judged: int = 0
    flagged: int = 0
    pv_wh: float = 0.0
    pv_exported_wh: float = 0.0
    loads: list[float] = field(default_factory=list)  # the feeder's net import per interval

    def add(self, exchange: np.ndarray, traded: np.ndarray, pv: np.ndarray, judged: int = 0,
            flagged: int = 0) -> None:
        """One interval: per participant exchange, traded export and PV generation (Wh)."""
        feeder = float(exchange.sum())
        self.intervals += 1
        self.loads.append(-feeder)
        self.peak_import_wh = max(self.peak_import_wh, -feeder)
        self.peak_export_wh = max(self.peak_export_wh, feeder)
        gap = exchange - traded
        self.imbalance_abs_wh += float(np.abs(gap).sum())
        self.imbalance_signed_wh += float(gap.sum())
        self.traded_wh += float(np.abs(traded).sum())
        self.exchanged_wh += float(np.abs(exchange).sum())
        short = np.where(traded > 0, traded - exchange, np.where(traded < 0, exchange - traded, 0.0))
        self.shortfall_wh += float(np.clip(short, 0, None).sum())
        self.judged += judged
        self.flagged += flagged
        self.pv_wh += float(pv.sum())
        self.pv_exported_wh += float(np.minimum(np.clip(exchange, 0, None), pv).sum())

    def summary(self) -> dict[str, float]:
        """The report's figures: kW for peaks, kWh for energy, shares 0-1."""
        kw = 3600 / self.interval_s / 1000
        loads = np.asarray(self.loads) if self.loads else np.zeros(1)
        return {
            "intervals": self.intervals,
            "peak_import_kw": self.peak_import_wh * kw,
            "peak_export_kw": self.peak_export_wh * kw,
            "p99_import_kw": float(np.percentile(loads, 99)) * kw,
            "imbalance_kwh": self.imbalance_abs_wh / 1000,
            "imbalance_signed_kwh": self.imbalance_signed_wh / 1000,
            "imbalance_share": self.imbalance_abs_wh / self.exchanged_wh if self.exchanged_wh else 0.0,
            "traded_kwh": self.traded_wh / 1000,
            "shortfall_kwh": self.shortfall_wh / 1000,
            "flagged_share": self.flagged / self.judged if self.judged else 0.0,
            "self_consumption": 1 - self.pv_exported_wh / self.pv_wh if self.pv_wh else float("nan"),
        }
