"""The order rule: how much a participant offers or bids for one interval, from its forecast quantiles.

A participant's net position over an interval (its generation minus its consumption, in Wh; export
positive) is uncertain, and the forecasts say how much: P10, P50, P90. The rule (one home for it;
the bidder and the balancing report both call `confident_wh`):

- offer only what it is confident to deliver: the position's P10, when that is a surplus;
- bid only for what it is confident to need: the deficit at the position's P90 (the smallest deficit
  it expects nine times in ten), when the P90 is still a deficit;
- when P10 < 0 < P90 it does not know which way it will trade, and stays out of the market.

Nine intervals in ten the participant then does at least what it traded, so the delivery check
(citygrid.ledger.delivery: a seller that exported less than it sold, a buyer that took less than it
bought) flags about one in ten of its trades instead of about one in two for a median bid; what it
did beyond the trade is an imbalance the grid (or its battery) absorbs.

A battery narrows the band: energy it can still discharge beyond its plan covers a surplus that turns
out short, and room it can still charge covers a deficit that turns out short, so the confident
quantile moves toward the median by that much (never past it: the battery's spare energy is not
sold, only used to keep the promise). Combining devices: the participant's quantiles are the sums of
its devices' quantiles (signed: generation +, consumption -). That is exact for one device and for
devices whose errors move together (a home's PV and its neighbours' on a cloudy day), and errs
toward caution otherwise (independent errors partly cancel). Pure logic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """A net export over one interval (Wh, export positive) as its P10 ≤ P50 ≤ P90."""

    p10: float
    p50: float
    p90: float

    @classmethod
    def point(cls, wh: float) -> Position:
        """A position known exactly (a point forecast, or a forecast without quantiles)."""
        return cls(wh, wh, wh)

    @classmethod
    def of_device(cls, p10: float, p50: float, p90: float, generation: bool) -> Position:
        """One device's position from its power quantiles in Wh: generation exports, consumption imports
        (its P90 consumption is the participant's P10 export)."""
        lo, mid, hi = (max(0.0, v) for v in sorted((p10, p50, p90)))  # the kind, not the sign, gives the flow
        return cls(lo, mid, hi) if generation else cls(-hi, -mid, -lo)

    def shifted(self, wh: float) -> Position:
        """The position with a known extra export (a battery's planned discharge; negative: charge)."""
        return Position(self.p10 + wh, self.p50 + wh, self.p90 + wh)


def combine(positions: Iterable[Position]) -> Position:
    """A participant's position from its devices': quantile by quantile sums (see the module docstring)."""
    p10 = p50 = p90 = 0.0
    for p in positions:
        p10, p50, p90 = p10 + p.p10, p50 + p.p50, p90 + p.p90
    return Position(p10, p50, p90)


def confident_wh(position: Position, spare_discharge_wh: float = 0.0, spare_charge_wh: float = 0.0) -> float:
    """Wh to trade: > 0 an offer, < 0 a bid, 0 none (the rule in the module docstring).

    `spare_discharge_wh` / `spare_charge_wh`: what a battery can still discharge / charge in the interval
    beyond its plan (0 without one)."""
    low = min(position.p50, position.p10 + max(0.0, spare_discharge_wh))
    high = max(position.p50, position.p90 - max(0.0, spare_charge_wh))
    if low > 0:
        return low
    if high < 0:
        return high
    return 0.0


def point_wh(position: Position) -> float:
    """The rule the bidder had before quantiles: trade the median position, whatever its spread (the
    balancing report's baseline)."""
    return position.p50
