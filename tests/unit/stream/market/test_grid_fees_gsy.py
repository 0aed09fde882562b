"""Grid Singularity's published two-sided grid-fee scenarios, reproduced with their amounts.

Source: gridsingularity/gsy-e, integration_tests/grid_fee.feature (removed from the repository in
commit a2bd05bc, "GSYE-122: Remove integration tests"; read at its parent) with the setups
src/gsy_e/setup/grid_fees/{constant_grid_fees,non_compounded_grid_fees,no_trades_high_fees}.py, and
the worked examples of wiki/docs/grid-fee-accounting.md. Their hierarchy: Grid → Neighborhood 1/2 →
House 1/2; the load (House 1) bids 30 ct/kWh, the PV (House 2) offers 10 ct/kWh. Here 1 ct/kWh is
1,000 planck/Wh, the neighborhoods are substation-level markets (each with one feeder), houses buses.
"""

from __future__ import annotations

import pytest

from citygrid.clearing import FeeSchedule
from citygrid.market import Mechanism, Order, Side
from citygrid.stream.market.auction import clear_on_grid
from citygrid.stream.market.fees import split
from citygrid.stream.market.grid import MarketGrid, Node

CT = 1_000  # planck/Wh per ct/kWh
PATH = ["house", "feeder", "substation", "grid", "substation", "feeder", "house"]  # House 2 → House 1


def gsy_grid() -> MarketGrid:
    nodes = [Node("grid", "grid", None, None)]
    for k in (1, 2):
        nodes += [Node(f"sub:n{k}", "substation", "grid", None),
                  Node(f"feeder:n{k}", "feeder", f"sub:n{k}", None),
                  Node(f"bus:h{k}", "house", f"feeder:n{k}", None)]
    return MarketGrid("gsy-e grid_fees", 3600, tuple(nodes))


LOAD_PV = [Order(order_id="load", participant="H1 General Load", side=Side.BID, wh=200, limit=30 * CT),
           Order(order_id="pv", participant="H2 PV", side=Side.OFFER, wh=200, limit=10 * CT)]
WHERE = {"H1 General Load": "h1", "H2 PV": "h2"}
CONSTANT = FeeSchedule(constant={"substation": 1 * CT, "grid": 2 * CT})  # constant_grid_fees.py
PERCENT = FeeSchedule(percent_bp={"substation": 500, "grid": 1000})  # non_compounded_grid_fees.py: 5 %, 10 %


@pytest.mark.parametrize(("fees", "seller", "shares"), [
    # "Constant grid fees are calculated correctly on pay as bid market": load pays 30, the PV gets 26,
    # Neighborhood 1, Grid, Neighborhood 2 take 1, 2, 1 ct/kWh.
    (CONSTANT, 26 * CT, [0, 0, 1 * CT, 2 * CT, 1 * CT, 0, 0]),
    # "Grid fees are calculated based on the original bid rate" (percentages, pay-as-bid): 30 = 25 revenue
    # + 1.25 + 2.5 + 1.25 (each market's percentage of the revenue, not compounded).
    (PERCENT, 25 * CT, [0, 0, 1250, 2500, 1250, 0, 0]),
])
def test_pay_as_bid_scenarios_reproduce_gsy_e(fees: FeeSchedule, seller: int, shares: list[int]) -> None:
    (t,) = clear_on_grid(LOAD_PV, gsy_grid(), WHERE, fees, Mechanism.PAY_AS_BID).trades
    assert (t.buyer, t.seller, t.wh) == ("H1 General Load", "H2 PV", 200)
    assert t.price == 30 * CT and t.price - t.grid_fee == seller
    assert split(fees, PATH, t.price) == (seller, shares)
    assert t.buyer_pays == 200 * 30 * CT and t.seller_receives == 200 * seller
    assert t.fee_total == 200 * sum(shares)


def test_pay_as_clear_with_percentages_pays_like_gsy_e() -> None:
    # gsy-e's pay-as-clear outline gives the same amounts as pay-as-bid for this book.
    (t,) = clear_on_grid(LOAD_PV, gsy_grid(), WHERE, PERCENT, Mechanism.PAY_AS_CLEAR).trades
    assert (t.price, t.price - t.grid_fee, t.grid_fee) == (30 * CT, 25 * CT, 5 * CT)


def test_pay_as_clear_with_constant_fees_prices_inside_the_interval_gsy_e_clears_in() -> None:
    # gsy-e's pay-as-clear clears House 1 at 30 and House 2 at 26: the top of the equilibrium interval
    # [10 + 4, 30]. Our rule takes its midpoint; the fees are gsy-e's whatever the price.
    result = clear_on_grid(LOAD_PV, gsy_grid(), WHERE, CONSTANT, Mechanism.PAY_AS_CLEAR)
    (t,) = result.trades
    assert 14 * CT <= t.price <= 30 * CT and t.price == 22 * CT
    assert t.grid_fee == 4 * CT and t.price - t.grid_fee == 18 * CT
    assert result.certificate.prices["bus:h1"] - result.certificate.prices["bus:h2"] == 4 * CT


def test_high_fees_leave_no_trade() -> None:
    # no_trades_high_fees.py, "High trade fees prevent trades": the load bids 45 ct/kWh, the DSO (in the
    # Grid market itself) sells at 30, and the Grid market charges 45: 30 + 45 > 45.
    nodes = [Node("grid", "grid", None, None), Node("sub:h1", "substation", "grid", None),
             Node("feeder:h1", "feeder", "sub:h1", None), Node("bus:h1", "house", "feeder:h1", None),
             Node("sub:dso", "substation", "grid", None), Node("feeder:dso", "feeder", "sub:dso", None),
             Node("bus:dso", "house", "feeder:dso", None)]
    grid = MarketGrid("gsy-e no_trades_high_fees", 3600, tuple(nodes))
    orders = [Order(order_id="load", participant="load", side=Side.BID, wh=4000, limit=45 * CT),
              Order(order_id="dso", participant="DSO", side=Side.OFFER, wh=10**9, limit=30 * CT)]
    fees = FeeSchedule(constant={"grid": 45 * CT})
    for mechanism in Mechanism:
        assert clear_on_grid(orders, grid, {"load": "h1", "DSO": "dso"}, fees, mechanism).trades == []


def test_percentage_rounding_keeps_every_planck() -> None:
    revenue, shares = split(PERCENT, PATH, 30_001)
    assert revenue == 25_000 and revenue + sum(shares) == 30_001  # the rounding remainder goes to the Grid
    assert shares[3] == 2_501
