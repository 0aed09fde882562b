"""The double auction against the independent LP reference, on random and real (SimBench) order books."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygrid.market import Mechanism, Order, Side
from citygrid.stream.market import clear
from citygrid.stream.market.book import IntervalBooks, order_from_forecast
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
        assert t.price <= bid.limit, "a buyer paid above its limit"
        assert t.price - t.grid_fee >= offer.limit, "a seller received below its limit"
        filled[t.bid_id] += t.wh
        filled[t.offer_id] += t.wh
    for oid, wh in filled.items():
        assert wh <= by_id[oid].wh, "an order traded more than it asked"
    bought = sum(filled[o.order_id] for o in orders if o.side is Side.BID)
    sold = sum(filled[o.order_id] for o in orders if o.side is Side.OFFER)
    assert bought == sold == result.wh
    ref = reference_clear(orders, fee)
    assert result.welfare == pytest.approx(ref.welfare, rel=1e-9, abs=1e-6)
    if mechanism is Mechanism.PAY_AS_CLEAR and result.trades:
        assert len({t.price for t in result.trades}) == 1


@settings(max_examples=150, deadline=None)
@given(orders=orders_st, fee=st.integers(0, 200), mechanism=st.sampled_from(list(Mechanism)))
def test_random_books_match_reference(orders: list[Order], fee: int, mechanism: Mechanism) -> None:
    _check(orders, fee, mechanism)


def test_real_simbench_books_match_reference() -> None:
    from citygrid.sim.profiles import load_profiles

    profiles = load_profiles(Path(__file__).resolve().parents[3] / ".cache")  # shared profile cache
    meters = [p for p in profiles if p.kind == "meter"][:40]
    pvs = [p for p in profiles if p.kind == "pv"]
    assert meters and pvs, "SimBench grid has no meters or PV"
    for step in range(40, 96 * 2, 7):  # daylight and night quarter-hours over two days
        books = IntervalBooks(900_000)
        for i, m in enumerate(meters):
            pv = pvs[i % len(pvs)].kw[step] if i % 2 == 0 else 0.0
            net_wh = (pv - m.kw[step]) * 250  # kW over 15 min, PV at every second household
            o = order_from_forecast(f"h{i}", step * 900_000, net_wh, buy_limit=3_000 + 37 * i,
                                    sell_limit=800 + 53 * i)
            if o:
                books.add(o)
        for _, orders in books.close_until(10**15):
            for mech in Mechanism:
                _check(orders, 150, mech)


def test_marginal_example() -> None:
    orders = [Order(order_id="b1", participant="A", side=Side.BID, wh=100, limit=30),
              Order(order_id="b2", participant="B", side=Side.BID, wh=50, limit=20),
              Order(order_id="o1", participant="C", side=Side.OFFER, wh=80, limit=10),
              Order(order_id="o2", participant="D", side=Side.OFFER, wh=80, limit=16)]
    pac = clear(orders, 2)
    assert [t.wh for t in pac.trades] == [80, 20, 50]
    assert pac.clearing_price == 19 and pac.welfare == 1780
    assert [t.price for t in clear(orders, 2, Mechanism.PAY_AS_BID).trades] == [30, 30, 20]
    assert reference_clear(orders, 2).price == pytest.approx(18)


def test_late_order_is_refused() -> None:
    books = IntervalBooks(1000)
    assert books.add(Order(order_id="a", participant="p", side=Side.BID, wh=1, limit=1, interval_start_ms=0))
    assert len(books.close_until(1000)) == 1
    assert not books.add(Order(order_id="b", participant="p", side=Side.BID, wh=1, limit=1,
                               interval_start_ms=500))
