"""Grid fees per market level, as Grid Singularity's exchange (gsy-e) charges them, in exact planck.

gsy-e (wiki/docs/grid-fee-accounting.md) charges a trade the fee of every market it passes through:
from the seller's house market up to the market where it matches and down to the buyer's house, each
once. The buyer pays all of it. A fee is either constant (planck per Wh here; cents/kWh there) or a
percentage of the seller's revenue ("non-compounded": every market's share is taken from the same
revenue, so a 5 % + 10 % + 5 % path costs 20 %, not 20.75 %). For a trade whose buyer pays B per Wh
over a path with constant fees C and percentages P (summed), the seller's revenue is
r = (B - C) / (1 + P) and market n gets c_n + p_n · r.

Money is whole planck. Percentages are in basis points (1/100 of a percent). Rounding, per Wh:
- the seller's revenue is rounded down: r = ⌊(B - C) · 10⁴ / (10⁴ + P)⌋;
- each market's percentage share is rounded down too, and the planck the roundings leave over go to
  the market where the trade matched (the top of its path), so buyer = seller + Σ fees exactly.

In the clearing, a market's percentage is applied to the order's own limit, as gsy-e propagates
orders (an offer entering a market adds the fee on its original rate; a bid leaving one subtracts
it), rounded up to whole planck so an accepted pair always leaves the seller at least its limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from citygrid.clearing import LEVELS, FeeSchedule

BP = 10_000  # basis points in one

__all__ = ["BP", "FeeSchedule", "ceil_div", "crossing", "path_totals", "split"]


def ceil_div(a: int, b: int) -> int:
    """⌈a / b⌉ in integers."""
    return -((-a) // b)


def crossing(fees: FeeSchedule, level: str, limit: int) -> int:
    """What an order with `limit` pays to enter (offer) or leave (bid) one market of `level`, planck/Wh."""
    return fees.c(level) + ceil_div(fees.p(level) * limit, BP)


def path_totals(fees: FeeSchedule, levels: Sequence[str]) -> tuple[int, int]:
    """(Σ constant, Σ percentage bp) over the markets of a trade's path."""
    return sum(fees.c(lv) for lv in levels), sum(fees.p(lv) for lv in levels)


def split(fees: FeeSchedule, levels: Sequence[str], buyer_rate: int) -> tuple[int, list[int]]:
    """gsy-e's split of a buyer's rate over a path (seller side first, the matching market at the top
    of the path): (seller's revenue, each market's fee), planck/Wh, summing exactly to `buyer_rate`."""
    c_sum, p_sum = path_totals(fees, levels)
    revenue = (buyer_rate - c_sum) * BP // (BP + p_sum)
    if revenue < 0:
        raise ValueError(f"a rate of {buyer_rate} does not cover the path's constant fees {c_sum}")
    shares = [fees.c(lv) + fees.p(lv) * revenue // BP for lv in levels]
    top = _top_index(levels)
    shares[top] += buyer_rate - revenue - sum(shares)
    return revenue, shares


def _top_index(levels: Sequence[str]) -> int:
    depth = [LEVELS.index(lv) for lv in levels]
    return depth.index(min(depth))
