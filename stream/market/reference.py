"""An independent formulation of the clearing as a linear program, solved with scipy (HiGHS).

Variables are the accepted energy of every bid and offer; the program
maximises welfare subject to supply equalling demand. It knows nothing of
merit orders or matching, so agreement with `auction.clear` is real evidence
that the auction is welfare-optimal. The balance constraint's dual value is a
market-clearing price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from citygrid.market import Order, Side


@dataclass(frozen=True)
class ReferenceClearing:
    """The LP's optimum."""

    welfare: float
    wh: float
    accepted: dict[str, float]  # order id → accepted Wh
    price: float | None  # dual of the energy balance, planck per Wh as paid by buyers


def reference_clear(orders: Sequence[Order], grid_fee: int) -> ReferenceClearing:
    """Maximise Σ bid·x - Σ (offer + fee)·y subject to Σx = Σy, 0 ≤ x, y ≤ quantity."""
    if not orders:
        return ReferenceClearing(0.0, 0.0, {}, None)
    sign = np.array([1.0 if o.side is Side.BID else -1.0 for o in orders])
    value = np.array([o.limit if o.side is Side.BID else o.limit + grid_fee for o in orders], float)
    res = linprog(
        c=-(sign * value), A_eq=sign[None, :], b_eq=[0.0],
        bounds=[(0.0, float(o.wh)) for o in orders], method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"the reference LP did not solve: {res.message}")
    x = res.x
    bought = float(x[sign > 0].sum())
    price = float(-res.eqlin.marginals[0]) if bought > 0 else None
    return ReferenceClearing(
        welfare=float(-res.fun), wh=bought,
        accepted={o.order_id: float(v) for o, v in zip(orders, x, strict=True) if v > 1e-9},
        price=price,
    )
