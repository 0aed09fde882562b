"""The delivery check's arithmetic: energy from power readings at any cadence, and the verdicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citygrid.ledger.delivery import DeviceEnergy, Sample, Tolerance, compare, integrate, judge, positions
from citygrid.market import Trade

T0 = 1_750_000_500_000 - 1_750_000_500_000 % 900_000  # a quarter-hour boundary
Q = 900_000  # a 15-minute interval, in ms
HOLD = 900_000
TOL = Tolerance(pct=2.0, wh=1.0)


def _samples(device: str, kind: str, points: list[tuple[int, float]]) -> list[Sample]:
    return [Sample(device, i, ts, kind, kw) for i, (ts, kw) in enumerate(points)]


def _trade(seller: str, buyer: str, wh: int, start: int = T0, n: int = 0) -> Trade:
    return Trade(trade_id=f"t{n}{seller}{buyer}", interval_start_ms=start, buyer=buyer, seller=seller,
                 bid_id=f"b{n}", offer_id=f"o{n}", wh=wh, price=10, grid_fee=1)


def test_one_quarter_hourly_reading_is_the_intervals_mean_power() -> None:
    # SimBench's meaning: the value at a quarter-hour is the mean power of the quarter-hour it starts.
    e = integrate("pv1", _samples("pv1", "pv", [(T0, 2.0), (T0 + Q, 9.0)]), T0, T0 + Q, HOLD)
    assert e.wh == pytest.approx(500.0)
    assert e.covered_ms == Q
    assert [s.ts_ms for s in e.used] == [T0]


def test_the_reading_before_the_interval_covers_its_start_and_the_last_is_cut_at_its_end() -> None:
    # 1 kW from 40 s before the start, 3 kW from 600 s in, another reading after the end.
    pts = [(T0 - 120_000, 5.0), (T0 - 40_000, 1.0), (T0 + 600_000, 3.0), (T0 + Q + 10_000, 7.0)]
    e = integrate("m", _samples("m", "meter", pts), T0, T0 + Q, HOLD)
    assert e.wh == pytest.approx(1.0 * 600 / 3.6 + 3.0 * 300 / 3.6)
    assert e.covered_ms == Q
    # Only the readings the energy rests on: not the older one, not the one after the interval.
    assert [s.ts_ms for s in e.used] == [T0 - 40_000, T0 + 600_000]


def test_silence_longer_than_the_hold_is_uncovered_and_counts_as_nothing() -> None:
    pts = [(T0, 4.0), (T0 + 800_000, 4.0)]
    e = integrate("m", _samples("m", "meter", pts), T0, T0 + Q, max_hold_ms=300_000)
    assert e.covered_ms == 300_000 + 100_000
    assert e.wh == pytest.approx(4.0 * 400 / 3.6)


def test_no_reading_before_the_interval_leaves_its_start_uncovered() -> None:
    e = integrate("m", _samples("m", "meter", [(T0 + 60_000, 1.0)]), T0, T0 + Q, HOLD)
    assert e.covered_ms == Q - 60_000
    assert integrate("m", [], T0, T0 + Q, HOLD) == DeviceEnergy("m", None, 0.0, 0, ())


@settings(max_examples=200, deadline=None)
@given(kw=st.floats(-50, 50, allow_nan=False), gaps=st.lists(st.integers(1, HOLD), min_size=1, max_size=60),
       lead=st.integers(0, HOLD))
def test_constant_power_at_any_cadence_gives_power_times_time(kw: float, gaps: list[int], lead: int) -> None:
    ts = [T0 - lead]
    for g in gaps:
        ts.append(ts[-1] + g)
    while ts[-1] < T0 + Q:  # the device keeps reporting, never silent longer than the hold
        ts.append(ts[-1] + HOLD)
    e = integrate("d", _samples("d", "pv", [(t, kw) for t in ts]), T0, T0 + Q, HOLD)
    assert e.covered_ms == Q
    assert e.wh == pytest.approx(kw * Q / 3_600_000 * 1000, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(points=st.lists(st.tuples(st.integers(-HOLD, 3 * Q), st.floats(0, 20, allow_nan=False)),
                       max_size=40),
       hold=st.integers(1_000, 2 * HOLD))
def test_energy_adds_up_over_adjacent_intervals(points: list[tuple[int, float]], hold: int) -> None:
    samples = _samples("d", "meter", [(T0 + t, kw) for t, kw in points])
    whole = integrate("d", samples, T0, T0 + 3 * Q, hold)
    parts = [integrate("d", samples, T0 + i * Q, T0 + (i + 1) * Q, hold) for i in range(3)]
    assert sum(p.wh for p in parts) == pytest.approx(whole.wh, abs=1e-6)
    assert sum(p.covered_ms for p in parts) == whole.covered_ms


def test_positions_sum_each_participants_trades_of_that_interval_only() -> None:
    trades = [_trade("s1", "b1", 300), _trade("s1", "b2", 200, n=1), _trade("s2", "b1", 50),
              _trade("s1", "b1", 999, start=T0 + Q)]
    assert positions(trades, T0) == {"b1": (0, 350), "b2": (0, 200), "s1": (500, 0), "s2": (50, 0)}


def _energy(device: str, kind: str, wh: float, covered: int = Q) -> DeviceEnergy:
    return DeviceEnergy(device, kind, wh, covered, (Sample(device, 0, T0, kind, 0.0),))


def test_an_honest_seller_within_the_meter_tolerance_is_not_flagged() -> None:
    # Sold 1000 Wh: 2 % + 1 Wh = 21 Wh of slack for the meter's own error.
    ok = judge("s", 1000, 0, [_energy("pv", "pv", 980.0)], Q, TOL)
    assert (ok.verdict, ok.side, ok.measured_wh, ok.flagged) == ("ok", "seller", 980.0, False)
    short = judge("s", 1000, 0, [_energy("pv", "pv", 978.0)], Q, TOL)
    assert short.verdict == "delivery_shortfall" and short.shortfall_wh == pytest.approx(22.0)


def test_a_sellers_own_consumption_is_not_delivered() -> None:
    r = judge("s", 1000, 0, [_energy("pv", "pv", 1500.0), _energy("house", "meter", 700.0)], Q, TOL)
    assert r.measured_wh == pytest.approx(800.0)
    assert r.verdict == "delivery_shortfall"


def test_a_buyer_falls_short_by_taking_less_than_it_bought_not_more() -> None:
    took_less = judge("b", 0, 500, [_energy("m", "meter", 300.0)], Q, TOL)
    assert (took_less.side, took_less.measured_wh) == ("buyer", 300.0)
    assert took_less.verdict == "delivery_shortfall"
    took_more = judge("b", 0, 500, [_energy("m", "meter", 900.0), _energy("pv", "pv", 100.0)], Q, TOL)
    assert (took_more.measured_wh, took_more.verdict) == (800.0, "ok")


def test_missing_readings_are_flagged_when_they_could_hide_a_shortfall() -> None:
    # No readings at all: no proof of delivery.
    silent = judge("s", 500, 0, [DeviceEnergy("pv", None, 0.0, 0, ())], Q, TOL)
    assert silent.verdict == "missing_readings" and silent.shortfall_wh == 500
    assert judge("s", 500, 0, [], Q, TOL).verdict == "missing_readings"  # no device known at all
    # A seller's household meter silent half the interval could hide consumption.
    hidden = judge("s", 500, 0, [_energy("pv", "pv", 900.0), _energy("house", "meter", 100.0, Q // 2)], Q,
                   TOL)
    assert hidden.verdict == "missing_readings" and hidden.hiding_gaps == ("house",)
    # A gap in the seller's PV can only add to what it delivered: proven enough without it.
    enough = judge("s", 500, 0, [_energy("pv", "pv", 600.0, Q // 2)], Q, TOL)
    assert enough.verdict == "ok"
    # For a buyer the roles turn: a meter gap is harmless, a PV gap could hide generation.
    assert judge("b", 0, 500, [_energy("m", "meter", 600.0, Q // 2)], Q, TOL).verdict == "ok"
    assert judge("b", 0, 500, [_energy("m", "meter", 600.0), _energy("pv", "pv", 0.0, 0)], Q,
                 TOL).verdict == "missing_readings"


def test_compare_judges_every_trader_on_its_own_devices() -> None:
    owners = {"honest": ["pv-h"], "cheat": ["pv-c"], "buyer": ["m-b"], "idle": ["pv-i"]}
    samples = {"pv-h": _samples("pv-h", "pv", [(T0, 2.0)]), "pv-c": _samples("pv-c", "pv", [(T0, 0.8)]),
               "m-b": _samples("m-b", "meter", [(T0 - 5_000, 4.0)]),
               "pv-i": _samples("pv-i", "pv", [(T0, 1.0)])}
    trades = [_trade("honest", "buyer", 500), _trade("cheat", "buyer", 500, n=1)]
    got = {r.participant: r for r in compare(trades, owners, samples, T0, Q, HOLD, TOL)}
    assert set(got) == {"honest", "cheat", "buyer"}  # idle did not trade: nothing to check
    assert got["honest"].verdict == "ok" and got["honest"].measured_wh == pytest.approx(500.0)
    assert got["cheat"].verdict == "delivery_shortfall" and got["cheat"].shortfall_wh == pytest.approx(300.0)
    # The buyer's one reading 5 s early holds 900 s: its last 5 s are uncovered, which for a buyer's
    # meter only lowers what it is credited with taking, so it is still proven.
    assert got["buyer"].measured_wh == pytest.approx(4.0 * 895 / 3.6)
    assert got["buyer"].verdict == "ok" and got["buyer"].devices[0].covered_ms == Q - 5_000
    assert compare(trades, {}, samples, T0, Q, HOLD, TOL)[0].verdict == "missing_readings"


def test_equal_buys_and_sells_leave_nothing_to_deliver() -> None:
    r = judge("p", 300, 300, [], Q, TOL)
    assert (r.side, r.verdict, r.flagged) == ("none", "no_trade", False)
