"""An independent formulation of the clearing as a linear program, solved with scipy (HiGHS).

One variable per order and per market it could trade in (its own and each above it): x[o, w] Wh of
order o matched in market w, valued as gsy-e propagates orders — an offer pays, on its own limit, the
fee of every market it enters up to w; a bid loses, on its own limit, the fee of every market it
leaves below w. Constraints: each order trades at most its Wh (after its participant's own orders are
netted), each market's matched bids equal its matched offers, and the net energy crossing each wire
(orders below it matched above it) stays within its capacity either way. Maximise Σ value - Σ cost.

It knows nothing of curves, merit orders or node prices, so agreement with `equilibrium.py` on
welfare is real evidence that the curve merge is optimal; the balance rows' duals are market prices.
With percentage fees the transport cost of energy depends on its seller's limit (cheap energy travels
further), so one price per market no longer sums up every order's choice; the market then clears with
this program itself (`lp_equilibrium`), slower but exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, vstack

from citygrid.clearing import FeeSchedule
from citygrid.market import Order
from citygrid.stream.market.book_arrays import Book, place
from citygrid.stream.market.equilibrium import Equilibrium
from citygrid.stream.market.fees import BP
from citygrid.stream.market.grid import MarketGrid


@dataclass(frozen=True)
class ReferenceClearing:
    """The LP's optimum."""

    welfare: float
    wh: float
    accepted: dict[str, float]  # order id → accepted Wh
    price: float | None  # dual of the top market's balance, planck per Wh as paid there
    prices: dict[str, float] | None = None  # every market's dual


@dataclass(frozen=True)
class _Program:
    cols_order: np.ndarray  # order index of each column
    cols_market: np.ndarray  # node index of each column's market
    gain: np.ndarray  # welfare per Wh of each column
    result: object


def bid_loss(book: Book, grid: MarketGrid, fees: FeeSchedule, k: int, market: str) -> int:
    """What order k (a bid) gives up in fees leaving each market below `market` on its way there."""
    b = int(book.limit[k])
    path = grid.ancestors(book.nodes[book.node[k]])
    below = path[: path.index(market)]
    return sum(fees.c(grid.node(n).level) - (-fees.p(grid.node(n).level) * b // BP) for n in below)


def _chain_matrix(book: Book, grid: MarketGrid) -> np.ndarray:
    index = {n: i for i, n in enumerate(book.nodes)}
    chains = [[index[a] for a in grid.ancestors(n)] for n in book.nodes]
    out = np.full((len(chains), max(map(len, chains))), -1, np.int64)
    for i, ch in enumerate(chains):
        out[i, : len(ch)] = ch
    return out


def _build(book: Book, grid: MarketGrid, fees: FeeSchedule) -> tuple[np.ndarray, ...]:
    """Columns (order, market, welfare per Wh) and the capacity rows' entries (column, wire node, sign)."""
    chain = _chain_matrix(book, grid)
    c = np.array([fees.c(grid.node(n).level) for n in book.nodes], np.int64)
    p = np.array([fees.p(grid.node(n).level) for n in book.nodes], np.int64)
    live = np.flatnonzero(book.qty > 0)
    lim, bid, paths = book.limit[live], book.is_bid[live], chain[book.node[live]]
    before = np.zeros(len(live), np.int64)  # fees of the markets below this one on the order's path
    cols_o, cols_m, gain, wire_col, wire_node, wire_sign = [], [], [], [], [], []
    for d in range(chain.shape[1]):
        at = paths[:, d]
        here = at >= 0
        cross = np.where(here, c[np.maximum(at, 0)] - (-p[np.maximum(at, 0)] * lim // BP), 0)
        first = sum(len(x) for x in cols_o)
        cols_o.append(live[here])
        cols_m.append(at[here])
        gain.append(np.where(bid, lim - before, -(lim + before + cross))[here])
        for j in range(d):  # the column's energy crosses the wires of the markets below it
            wire_col.append(first + np.arange(int(here.sum())))
            wire_node.append(paths[here, j])
            wire_sign.append(np.where(bid[here], -1, 1))
        before = before + cross
    cat = np.concatenate
    wires = (cat(wire_col), cat(wire_node), cat(wire_sign)) if wire_col else (np.zeros(0, np.int64),) * 3
    return cat(cols_o), cat(cols_m), cat(gain).astype(float), *wires


def _solve(book: Book, grid: MarketGrid, fees: FeeSchedule) -> _Program:
    cols_o, cols_m, gain, w_col, w_node, w_sign = _build(book, grid, fees)
    n_cols, n_nodes = len(cols_o), len(book.nodes)
    sign = np.where(book.is_bid[cols_o], -1.0, 1.0)
    a_eq = csr_matrix((sign, (cols_m, np.arange(n_cols))), shape=(n_nodes, n_cols))
    orders = np.unique(cols_o)
    row_of = np.searchsorted(orders, cols_o)
    a_qty = csr_matrix((np.ones(n_cols), (row_of, np.arange(n_cols))), shape=(len(orders), n_cols))
    cap = np.array([grid.node(n).capacity_wh if grid.node(n).capacity_wh is not None else -1
                    for n in book.nodes], float)
    limited = np.flatnonzero(cap >= 0)
    w_keep = np.isin(w_node, limited)
    w_row = np.searchsorted(limited, w_node[w_keep])
    a_wire = csr_matrix((w_sign[w_keep].astype(float), (w_row, w_col[w_keep])), shape=(len(limited), n_cols))
    a_ub = vstack([a_qty, a_wire, -a_wire]).tocsr()
    b_ub = np.concatenate([book.qty[orders].astype(float), cap[limited], cap[limited]])
    res = linprog(c=-gain, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(n_nodes),
                  bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the reference LP did not solve: {res.message}")
    return _Program(cols_o, cols_m, gain, res)


def reference_clear_on_grid(orders: Sequence[Order], grid: MarketGrid, location: dict[str, str] | None,
                            fees: FeeSchedule) -> ReferenceClearing:
    """The LP optimum of one interval on `grid` (same netting, fees and capacities as the auction)."""
    book = place(orders, grid, location)
    if not (book.qty > 0).any():
        return ReferenceClearing(0.0, 0.0, {}, None, {})
    prog = _solve(book, grid, fees)
    x = prog.result.x
    accepted = np.bincount(prog.cols_order, weights=x, minlength=len(book.orders))
    bought = float(accepted[book.is_bid].sum())
    duals = prog.result.eqlin.marginals
    prices = {n: float(duals[i]) for i, n in enumerate(book.nodes)}
    return ReferenceClearing(
        welfare=float(-prog.result.fun), wh=bought,
        accepted={book.orders[k].order_id: float(v) for k, v in enumerate(accepted) if v > 1e-9},
        price=prices[book.nodes[-1]] if bought > 0 else None, prices=prices)


def reference_clear(orders: Sequence[Order], grid_fee: int) -> ReferenceClearing:
    """The flat exchange's LP: one market, `grid_fee` per Wh paid by each offer, no wires."""
    return reference_clear_on_grid(orders, MarketGrid.flat(), None, FeeSchedule(constant={"grid": grid_fee}))


def lp_equilibrium(book: Book, grid: MarketGrid, fees: FeeSchedule) -> tuple[Equilibrium | None, list]:
    """The clearing by the LP (used when percentage fees apply): prices are the balance rows' duals
    (integral at a vertex: the constraint matrix is a network matrix), quantities integral likewise."""
    if not (book.qty > 0).any():
        return None, []
    prog = _solve(book, grid, fees)
    x = np.rint(prog.result.x).astype(np.int64)
    accepted = np.bincount(prog.cols_order, weights=x, minlength=len(book.orders)).astype(np.int64)
    prices = {n: round(m) for n, m in zip(book.nodes, prog.result.eqlin.marginals, strict=True)}
    flows = _flows(book, grid, prog, x)
    used = np.flatnonzero(x)
    return Equilibrium(prices, flows, accepted), [(int(prog.cols_order[k]), int(prog.cols_market[k]),
                                                   int(x[k])) for k in used]


def _flows(book: Book, grid: MarketGrid, prog: _Program, x: np.ndarray) -> dict[str, int]:
    flows = dict.fromkeys(book.nodes[:-1], 0)
    for k in np.flatnonzero(x):
        o, market = int(prog.cols_order[k]), book.nodes[int(prog.cols_market[k])]
        path = grid.ancestors(book.nodes[book.node[o]])
        sign = -1 if book.is_bid[o] else 1
        for n in path[: path.index(market)]:
            flows[n] += sign * int(x[k])
    return flows
