"""A home battery agent: plans each interval from the forecasts, then keeps the participant's trade.

Two decisions per market interval, both within the battery's physical limits (SoC bounds, power,
one-way efficiency η on charge and on discharge, self-discharge):

1. Before the gate (`plan`, which changes nothing), from the forecast median of the participant's
   net position x (export +):
   - a surplus (x > 0) is stored: charge x (self-consumption: the PV kept for the evening);
   - an import above the participant's peak threshold H is discharged down to H (the evening peak
     cut). H is learnt: it rises when an import above it found the battery empty and sinks slowly
     while the battery copes, so the stored energy lasts the whole peak; it stays at or above the
     home's running level L (an exponential average of its import, about a day long);
   - an import below L charges from the grid up to L, but only while the battery holds less than
     `grid_reserve` of its capacity (valley filling in winter, when there is no surplus to store,
     while leaving room for the next day's PV).
   Cutting each home's import above its own threshold can only lower the feeder's peak, and charging never
   lifts a home above its level, so the batteries cannot make a new peak together. The plan shifts
   the participant's position; the order rule (citygrid.stream.bidding) trades the result and uses
   the battery's spare power (`spare`) to trade closer to the median.
2. During the interval (`track`), once the net is measured: discharge (or charge) the difference
   between what was traded and what the home did, so the meter shows the trade (no imbalance) as far
   as the limits allow. With no trade, that is plain self-consumption: the home exchanges nothing.

Energy bookkeeping (AC side, where the meter is): discharging e Wh takes e/η from the cells, charging
e Wh stores e·η, so a round trip keeps η². Pure logic, picklable.
"""

from __future__ import annotations

from dataclasses import dataclass

from citygrid.participants import Battery

DAY_S = 86_400


@dataclass
class BatteryAgent:
    """One battery's state (stored energy, the home's import level) and its two decisions."""

    spec: Battery
    interval_s: int
    stored_wh: float | None = None  # energy in the cells; default: empty (SimBench's soc_percent 0)
    level_wh: float = 0.0  # running level of the home's forecast import per interval
    level_decay: float = 1 / 96  # about a day of quarter-hours
    grid_reserve: float = 0.3  # share of capacity the battery may fill from the grid
    peak_wh: float | None = None  # import it discharges above; learnt (default: the level)
    peak_rate: float = 0.05  # how fast the peak threshold moves, in units of the level

    def __post_init__(self) -> None:
        if self.stored_wh is None:
            self.stored_wh = self.spec.min_soc * self.spec.capacity_wh
        if self.peak_wh is None:
            self.peak_wh = self.level_wh

    @property
    def soc(self) -> float:
        """State of charge, 0-1."""
        return float(self.stored_wh) / self.spec.capacity_wh

    def max_discharge_wh(self) -> float:
        """AC energy it can deliver this interval (power limit, energy above min SoC, after losses)."""
        above = float(self.stored_wh) - self.spec.min_soc * self.spec.capacity_wh
        return max(0.0, min(self._power_wh(), above * self.spec.efficiency))

    def max_charge_wh(self) -> float:
        """AC energy it can take this interval (power limit, room below max SoC, before losses)."""
        room = self.spec.max_soc * self.spec.capacity_wh - float(self.stored_wh)
        return max(0.0, min(self._power_wh(), room / self.spec.efficiency))

    def clip(self, wh: float) -> float:
        """`wh` (discharge +, charge -) within this interval's limits."""
        return min(wh, self.max_discharge_wh()) if wh >= 0 else -min(-wh, self.max_charge_wh())

    def plan(self, net_p50_wh: float) -> float:
        """Planned AC energy for an interval (discharge +), from its forecast net export; changes nothing."""
        imported = -net_p50_wh
        reserve_wh = self.grid_reserve * self.spec.capacity_wh
        if imported < 0:
            want = imported  # store the whole surplus
        elif imported > self.peak_wh:
            want = imported - self.peak_wh
        elif float(self.stored_wh) < reserve_wh:
            want = -min(self.level_wh - imported, (reserve_wh - float(self.stored_wh)) / self.spec.efficiency)
        else:
            want = 0.0
        return self.clip(want)

    def spare(self, planned_wh: float) -> tuple[float, float]:
        """(more discharge, more charge) it could still do this interval on top of `planned_wh`."""
        return self.max_discharge_wh() - planned_wh, self.max_charge_wh() + planned_wh

    def track(self, traded_export_wh: float, net_export_wh: float) -> float:
        """Run the interval once its net is measured: make the home's exchange the traded export as far
        as the limits allow. Returns the AC energy it delivered (discharge +)."""
        done = self.apply(traded_export_wh - net_export_wh)
        self._learn_level(-net_export_wh)
        return done

    def close(self, planned_wh: float, net_p50_wh: float) -> float:
        """Run the interval on its plan, for a scheduler that never sees the measurement (the bidder)."""
        done = self.apply(planned_wh)
        self._learn_level(-net_p50_wh)
        return done

    def apply(self, wh: float) -> float:
        """Charge or discharge `wh` AC (clipped to the limits), then lose the interval's self-discharge."""
        done = self.clip(wh)
        eta = self.spec.efficiency
        stored = float(self.stored_wh) - (done / eta if done >= 0 else done * eta)
        stored *= 1 - self.spec.self_discharge_per_day * self.interval_s / DAY_S
        # Only self-discharge takes it below min SoC; rounding must never take it past either bound.
        self.stored_wh = min(max(stored, 0.0), self.spec.max_soc * self.spec.capacity_wh)
        return done

    def _learn_level(self, imported_wh: float) -> None:
        # The peak threshold rises when an import above it found the battery empty (it was set too low
        # to last the peak) and falls slowly while the battery copes, so the stored energy is spread
        # over the whole peak instead of spent on its first quarter-hours; it never goes below L.
        step = self.peak_rate * max(self.level_wh, 1.0)
        if imported_wh > self.peak_wh:
            empty = self.max_discharge_wh() < 1e-6
            self.peak_wh += step if empty else -step / 16
        self.level_wh += self.level_decay * (max(0.0, imported_wh) - self.level_wh)
        self.peak_wh = max(self.peak_wh, self.level_wh)

    def _power_wh(self) -> float:
        return self.spec.power_w * self.interval_s / 3600
