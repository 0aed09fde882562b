"""The battery agent: never beyond its SoC and power limits, losses on both ways, and on a simple
evening-peak profile it lowers the peak."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from citygrid.participants import Battery
from citygrid.stream.battery import BatteryAgent

SPEC = Battery(capacity_wh=10_000, power_w=4_000, efficiency=0.9, min_soc=0.1, max_soc=0.9,
               self_discharge_per_day=0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-5_000, 5_000), min_size=1, max_size=60))
def test_whatever_it_is_asked_it_stays_within_soc_and_power_limits(requests: list[float]) -> None:
    agent = BatteryAgent(SPEC, 900, stored_wh=5_000)
    for wh in requests:
        done = agent.apply(wh)
        assert abs(done) <= SPEC.power_w * 900 / 3600 + 1e-9  # 1 kWh per quarter-hour at 4 kW
        assert abs(done) <= abs(wh) + 1e-9 and done * wh >= 0
        assert SPEC.min_soc - 1e-9 <= agent.soc <= SPEC.max_soc + 1e-9


def test_efficiency_is_charged_each_way() -> None:
    agent = BatteryAgent(SPEC, 900, stored_wh=1_000)
    assert agent.apply(-900) == -900
    assert agent.stored_wh == 1_000 + 900 * 0.9  # 810 Wh reach the cells
    got = agent.apply(10_000)  # asks for more than it holds above min SoC
    assert abs(got - 810 * 0.9) < 1e-6 and abs(agent.stored_wh - 1_000) < 1e-6  # round trip keeps 0.81


def test_self_discharge_is_lost_each_interval() -> None:
    agent = BatteryAgent(SPEC.model_copy(update={"self_discharge_per_day": 0.01}), 900, stored_wh=5_000)
    for _ in range(96):
        agent.apply(0.0)
    assert abs(agent.stored_wh - 5_000 * (1 - 0.01 / 96) ** 96) < 1e-6


def test_it_tracks_the_trade_so_the_meter_shows_what_was_traded() -> None:
    agent = BatteryAgent(SPEC, 900, stored_wh=5_000)
    net = 300.0  # the home exported 300 Wh but sold only 100
    assert net + agent.track(100, net) == 100
    assert -400 + agent.track(-250, -400) == -250  # imported 400, bought 250: the battery covers 150


def test_on_a_daily_profile_with_an_evening_peak_it_lowers_the_peak() -> None:
    day = [400.0] * 64 + [1_600.0] * 16 + [400.0] * 16  # Wh per quarter-hour: a 6.4 kW evening peak
    agent = BatteryAgent(Battery(capacity_wh=20_000, power_w=4_000, efficiency=0.95,
                                 self_discharge_per_day=0), 900, level_wh=400.0)
    peaks = []
    for _ in range(14):
        peak = 0.0
        for imported in day:
            planned = agent.plan(-imported)  # perfect forecast, no trade: the plan is what runs
            peak = max(peak, imported - agent.close(planned, -imported))
        peaks.append(peak)
    # Once its threshold has settled (second week), the grid-filled 30 % (5.7 kWh out) is spread over
    # the 4 h peak: the daily peak falls by over a tenth on average (mostly ~20 %; the threshold still
    # hunts and some days keep the full peak).
    assert sum(peaks[7:]) / 7 < 1_600 * 0.9 and min(peaks[7:]) < 1_600 * 0.8
    assert 0 <= agent.stored_wh <= 20_000


def test_a_surplus_is_stored_and_the_plan_never_exceeds_what_it_can_do() -> None:
    agent = BatteryAgent(SPEC, 900, stored_wh=8_900)
    assert agent.plan(5_000) == -agent.max_charge_wh() and agent.max_charge_wh() < 1_000
    up, down = agent.spare(agent.plan(5_000))
    assert down == 0 and up == agent.max_discharge_wh() + agent.max_charge_wh()
