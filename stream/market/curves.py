"""Net-supply step curves: how much a part of the grid sells (+) or buys (-) at each price.

A curve is nondecreasing and piecewise constant: `x` are its breakpoints (sorted, unique integer
prices) and `v[i]` its value on the open interval between x[i-1] and x[i] (x[-1] = -∞, x[m] = +∞).
At a breakpoint the curve takes every value in [v[i], v[i+1]]: there a marginal order trades any part
of its quantity. Shifting, clipping and adding such curves is all the bottom-up clearing needs, and
each is a few numpy operations over the breakpoints, so a 100,000-order book merges in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INF = np.iinfo(np.int64).max // 4  # "unlimited" quantity; far from overflow when a few are added


@dataclass(frozen=True)
class Curve:
    """A nondecreasing step function of price (see the module docstring)."""

    x: np.ndarray  # int64, sorted, unique
    v: np.ndarray  # int64, len(x) + 1

    @classmethod
    def zero(cls) -> Curve:
        """Neither buys nor sells at any price."""
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64))

    @classmethod
    def of_orders(cls, costs: np.ndarray, supply: np.ndarray, values: np.ndarray,
                  demand: np.ndarray) -> Curve:
        """Offers selling `supply` at prices ≥ `costs`, bids buying `demand` at prices ≤ `values`."""
        x = np.unique(np.concatenate([costs, values]).astype(np.int64))
        c_order, v_order = np.argsort(costs, kind="stable"), np.argsort(values, kind="stable")
        c_sorted, v_sorted = costs[c_order], values[v_order]
        s_cum = np.concatenate([[0], np.cumsum(supply[c_order])])
        d_cum = np.concatenate([[0], np.cumsum(demand[v_order])])
        edges = np.append(x, INF)
        sold = s_cum[np.searchsorted(c_sorted, edges, "left")]  # offers costing < the interval's top
        bought = d_cum[-1] - d_cum[np.searchsorted(v_sorted, edges, "left")]  # bids valuing ≥ it
        v = (sold - bought).astype(np.int64)
        v[-1] = s_cum[-1]
        return cls(x, v)

    def shift(self, delta: int) -> Curve:
        """The curve of price π ↦ self(π - delta)."""
        return Curve(self.x + delta, self.v)

    def clip(self, lo: int, hi: int) -> Curve:
        """Values held within [lo, hi] (a wire's capacity either way)."""
        v = np.clip(self.v, lo, hi)
        keep = v[:-1] != v[1:]
        return Curve(self.x[keep], np.concatenate([v[:1], v[1:][keep]]))

    def at(self, price: int, offset: int = 0) -> tuple[int, int]:
        """The range of values at `price` (a single value off the breakpoints), less `offset`."""
        lo = self.v[np.searchsorted(self.x, price, "left")]
        hi = self.v[np.searchsorted(self.x, price, "right")]
        return int(lo) - offset, int(hi) - offset

    def zeros(self, target: int = 0) -> tuple[int | None, int | None]:
        """The closed price interval where the curve can take `target` (None: unbounded that way)."""
        v = self.v - target
        if v[0] > 0 or v[-1] < 0:
            raise ValueError(f"the curve never reaches {target}")
        lo = None if v[0] == 0 else int(self.x[np.argmax(v[1:] >= 0)])
        hi = None if v[-1] == 0 else int(self.x[len(v) - 2 - np.argmax(v[:-1][::-1] <= 0)])
        return lo, hi


def add(curves: Sequence[Curve]) -> Curve:
    """The pointwise sum (e.g. a market's children's exports)."""
    curves = [c for c in curves if len(c.x) or c.v[0]]
    if not curves:
        return Curve.zero()
    if len(curves) == 1:
        return curves[0]
    x = np.unique(np.concatenate([c.x for c in curves]))
    v = np.zeros(len(x) + 1, np.int64)
    for c in curves:
        v[:-1] += c.v[np.searchsorted(c.x, x, "left")]
        v[-1] += c.v[-1]
    return Curve(x, v)


def export_curve(inside: Curve, up_fee: int, down_fee: int, capacity: int | None) -> Curve:
    """What a part of the grid sends its parent market (+) or takes from it (-) at the parent's price.

    Selling up costs the parent market's fee (`up_fee`), buying from it the part's own (`down_fee`),
    and the wire carries at most `capacity` either way; between the two fee-shifted prices the part
    trades only within itself.
    """
    cap = INF if capacity is None else capacity
    if cap == 0:
        return Curve.zero()
    return add([inside.shift(up_fee).clip(0, cap), inside.shift(-down_fee).clip(-cap, 0)])
