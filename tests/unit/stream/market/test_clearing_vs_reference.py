"""The flat double auction (the worker's `clear` call) against the independent LP reference and the
competitive-equilibrium conditions, on random books and the issue's worked examples."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygrid.market import Mechanism, Order, Side
from citygrid.stream.market import clear
from citygrid.stream.market.grid import MarketGrid
from citygrid.stream.market.prices import check_certificate
from citygrid.stream.market.reference import reference_clear

orders_st = st.lists(
    st.builds(lambda i, side, wh, limit: (i, side, wh, limit), st.integers(0, 10**6),
              st.sampled_from(list(Side)), st.integers(1, 5_000), st.integers(0, 1_000)),
    max_size=60, unique_by=lambda t: t[0],
).map(lambda rows: [Order(order_id=f"o{i}", participant=f"p{i % 7}", side=s, wh=w, limit=lim)
                    for i, s, w, lim in rows])


def _check(orders: list[Order], fee: int, mechanism: Mechanism) -> None:
    result = clear(orders, fee, mechanism)
    by_id = {o.order_id: o for o in orders}
    filled: dict[str, int] = defaultdict(int)
    for t in result.trades:
        bid, offer = by_id[t.bid_id], by_id[t.offer_id]
        assert bid.side is Side.BID and offer.side is Side.OFFER
        assert t.buyer != t.seller, "a participant traded with itself"
        assert t.price <= bid.limit, "a buyer paid above its limit"
        assert t.price - t.grid_fee >= offer.limit, "a seller received below its limit"
        assert t.grid_fee == fee
        filled[t.bid_id] += t.wh
        filled[t.offer_id] += t.wh
    for oid, wh in filled.items():
        netted = result.certificate.netted.get(oid, 0)
        assert wh + netted <= by_id[oid].wh, "an order traded more than it asked"
    assert result.welfare == pytest.approx(reference_clear(orders, fee).welfare, rel=1e-9, abs=1e-6)
    assert check_certificate(result.certificate, orders, MarketGrid.flat(), None) == []
    if mechanism is Mechanism.PAY_AS_CLEAR and result.trades:
        assert {t.price for t in result.trades} == {result.clearing_price}


@settings(max_examples=150, deadline=None)
@given(orders=orders_st, fee=st.integers(0, 200), mechanism=st.sampled_from(list(Mechanism)))
def test_random_books_match_reference(orders: list[Order], fee: int, mechanism: Mechanism) -> None:
    _check(orders, fee, mechanism)


def _order(oid: str, who: str, side: Side, wh: int, limit: int) -> Order:
    return Order(order_id=oid, participant=who, side=side, wh=wh, limit=limit)


def test_the_issue_example_prices_inside_the_equilibrium_interval_not_at_the_midpoint_of_a_pair() -> None:
    # Issue 13: bids 100 and 90, offers 10 and 95, no fee. The old rule priced 55, where the rejected
    # bid of 90 would gladly buy. Any price in [90, 95] clears; the rule takes the midpoint, 92.
    orders = [_order("b1", "A", Side.BID, 10, 100), _order("b2", "B", Side.BID, 10, 90),
              _order("o1", "C", Side.OFFER, 10, 10), _order("o2", "D", Side.OFFER, 10, 95)]
    result = clear(orders, 0)
    assert [(t.bid_id, t.offer_id, t.wh) for t in result.trades] == [("b1", "o1", 10)]
    assert 90 <= result.clearing_price <= 95 and result.clearing_price == 92
    assert reference_clear(orders, 0).price in (90, 95)  # the LP's dual sits at one end


def test_marginal_example() -> None:
    orders = [_order("b1", "A", Side.BID, 100, 30), _order("b2", "B", Side.BID, 50, 20),
              _order("o1", "C", Side.OFFER, 80, 10), _order("o2", "D", Side.OFFER, 80, 16)]
    pac = clear(orders, 2)
    assert [t.wh for t in pac.trades] == [80, 20, 50]
    # o2 trades 70 of its 80 Wh: the price must be exactly its cost with the fee (16 + 2), as the LP says.
    assert pac.clearing_price == 18 and pac.welfare == 1780
    assert reference_clear(orders, 2).price == pytest.approx(18)
    assert [t.price for t in clear(orders, 2, Mechanism.PAY_AS_BID).trades] == [30, 30, 20]


def test_a_participants_own_bid_and_offer_never_trade_with_each_other() -> None:
    orders = [_order("b", "A", Side.BID, 50, 100), _order("s", "A", Side.OFFER, 80, 10),
              _order("b2", "B", Side.BID, 100, 60)]
    result = clear(orders, 1)
    assert all(t.buyer != t.seller for t in result.trades)
    assert result.certificate.netted == {"b": 50, "s": 50}  # A supplies itself, no trade, no fee
    assert [(t.buyer, t.seller, t.wh) for t in result.trades] == [("B", "A", 30)]


def test_the_same_book_in_any_order_clears_identically() -> None:
    orders = [_order(f"o{i}", f"p{i % 5}", Side.BID if i % 3 else Side.OFFER, 10 + i, 50 + (i * 37) % 90)
              for i in range(40)]
    a = clear(orders, 3, interval_start_ms=900_000)
    b = clear(list(reversed(orders)), 3, interval_start_ms=900_000)
    assert a.trades == b.trades and a.certificate == b.certificate
