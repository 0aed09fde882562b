"""Forecasters and baselines share one protocol; the learned models beat their baselines on real data."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import pytest

from citygrid.sim.profiles import T0_MS, load_profiles
from citygrid.stream.features import DayProfile, Solar, features
from citygrid.stream.forecasting import (
    MODELS,
    LogCorrection,
    OnlineModel,
    Persistence,
    SeasonalNaive,
    Selector,
    SeriesState,
    SmartPersistence,
    _lad,
    observe,
)
from citygrid.stream.solar import Site

CACHE = Path(__file__).resolve().parents[3] / ".cache"
T0 = 1_750_000_000_000
NOON_JUNE = 1_466_078_400_000  # 2016-06-16T12:00Z


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_follows_the_protocol(name: str) -> None:
    model = MODELS[name]()
    assert isinstance(model, OnlineModel)
    x = features(deque([1.0, 2.0, 3.0]), T0, 900, 96)
    model.learn_one(x, 4.0)
    model.learn_one(x, 4.0)
    assert isinstance(model.predict_one(x), float)


def test_features_point_one_season_back_from_the_target() -> None:
    history = deque(float(i) for i in range(96))
    x = features(history, T0, 900, 96)
    assert x["last"] == 95.0 and x["trend"] == 1.0 and x["base"] == 95.0
    assert x["season"] == 0.0  # 96 steps before the target interval (step 96)
    assert sum(v for k, v in x.items() if k.startswith("h")) == 1.0


def test_baselines_predict_last_seasonal_and_smart_persistence_values() -> None:
    x = {"last": 2.0, "season": 5.0, "base": 3.0}
    assert Persistence().predict_one(x) == 2.0
    assert SeasonalNaive().predict_one(x) == 5.0
    assert SeasonalNaive().predict_one({"last": 2.0}) == 2.0
    assert SmartPersistence().predict_one(x) == 3.0
    assert SmartPersistence().predict_one({"last": 2.0}) == 2.0  # no sun: persistence


def test_smart_persistence_scales_the_last_clear_sky_index_to_the_target_sky() -> None:
    solar = Solar(Site())
    ghi_now, _ = solar.table.at(NOON_JUNE)
    ghi_next, _ = solar.table.at(NOON_JUNE + 900_000)
    x = features(deque([0.5 * ghi_now]), NOON_JUNE, 900, 96, solar=solar)
    assert x["base"] == pytest.approx(0.5 * ghi_next)  # same cloudiness, the next quarter-hour's sky
    night = NOON_JUNE + 12 * 3_600_000
    assert features(deque([0.0]), night, 900, 96, solar=solar)["base"] == 0.0


def test_the_day_profile_separates_working_days_from_sundays() -> None:
    profile = DayProfile(96)
    profile.learn(0, 40, 10.0)
    profile.learn(2, 40, 1.0)
    assert profile.expect(0, 40) == 10.0 and profile.expect(2, 40) == 1.0
    profile.learn(0, 40, 20.0)
    assert 10.0 < profile.expect(0, 40) < 20.0


def test_an_untrained_model_falls_back_to_persistence() -> None:
    state = SeriesState(900, 96)
    step = observe(state, 3.5, T0)
    assert step.error is None and step.forecast == pytest.approx(3.5)
    assert step.target_ts_ms == T0 + 900_000
    assert step.bands[0] <= step.bands[1] <= step.bands[2]


def test_the_prequential_errors_are_scored_before_learning() -> None:
    state = SeriesState(900, 4, model_name="persistence")
    for i, v in enumerate([1.0, 3.0, 2.0]):
        observe(state, v, T0 + i * 900_000)
    assert state.n == 2
    assert state.mae()["model"] == pytest.approx((2.0 + 1.0) / 2)
    assert state.mae()["persistence"] == state.mae()["model"]


def test_pv_is_scored_in_daylight_only() -> None:
    state = SeriesState(900, 96, model_name="persistence", site=Site())
    for i in range(96 * 2):  # two days from midnight UTC in June
        observe(state, 1.0, NOON_JUNE - 12 * 3_600_000 + i * 900_000)
    assert 0 < state.scores.n < state.n
    assert state.scores.n == pytest.approx(2 * 96 * 15 / 24, rel=0.15)  # about 15 h of sun above 5°


def test_the_selector_forecasts_with_the_expert_that_errs_least() -> None:
    sel = Selector({"persistence": Persistence(), "seasonal": SeasonalNaive()})
    for _ in range(50):
        sel.learn_one({"last": 0.0, "season": 5.0}, 5.0)
    assert sel.best == "seasonal" and sel.predict_one({"last": 1.0, "season": 7.0}) == 7.0


def _replay(kind: str, model: str, days: range, site: Site | None) -> dict[str, float]:
    p = next(p for p in load_profiles(CACHE) if p.kind == kind)
    state = SeriesState(900, 96, model_name=model, site=site)
    for i in range(96 * days.start, 96 * days.stop):
        observe(state, float(p.kw[i]), T0_MS + i * 900_000)
    return state.mae() | {"coverage": state.scores.coverage()}


def test_the_default_forecaster_beats_smart_persistence_on_real_pv_in_daylight() -> None:
    mae = _replay("pv", "river_lad", range(120, 150), Site())
    assert mae["model"] < 0.9 * mae["smart_persistence"] < mae["persistence"], mae


def test_the_default_forecaster_beats_persistence_on_a_real_load() -> None:
    mae = _replay("meter", "river_lad", range(0, 60), None)
    assert mae["model"] < 0.97 * mae["persistence"], mae
    assert 0.7 < mae["coverage"] < 0.9, mae


def test_the_log_correction_learns_ratios_and_never_overflows() -> None:
    model = LogCorrection(_lad(0.01))
    x = {"last": 2.0, "base": 2.0}
    assert model.predict_one(x) == 2.0  # untrained: its baseline
    for last in [1.0, 2.0, 4.0, 0.5] * 500:  # every step doubles whatever the level
        model.learn_one({"last": last, "base": last}, 2 * last)
    assert model.predict_one({"last": 3.0, "base": 3.0}) == pytest.approx(6.0, rel=0.1)
    model.regressor.predict_one = lambda x: 1e6  # a diverged regressor
    assert math.isfinite(model.predict_one(x))


class _Counting(Persistence):
    calls = 0

    def predict_one(self, x: dict[str, float]) -> float:
        self.calls += 1
        return super().predict_one(x)


def test_the_selector_computes_each_experts_forecast_once_per_step() -> None:
    a, b = _Counting(), _Counting()
    sel = Selector({"a": a, "b": b})
    x = {"last": 1.0}
    sel.predict_one(x)
    sel.learn_one(x, 2.0)
    assert a.calls == b.calls == 1
    sel.learn_one({"last": 1.0}, 2.0)  # an example it did not forecast: scored afresh
    assert a.calls == b.calls == 2


def _household(model: str, days: int) -> dict[str, float]:
    p = next(p for p in load_profiles(CACHE) if p.profile == "H0-B")
    state = SeriesState(900, 96, model_name=model)
    for i in range(96 * days):
        observe(state, float(p.kw[i]), T0_MS + i * 900_000)
    return state.mae()


def test_the_workers_model_beats_the_linear_one_on_a_real_home() -> None:
    picked, linear = _household("river_pick", 60)["model"], _household("river_lad", 60)["model"]
    assert picked < linear, (picked, linear)


def test_the_workers_model_picks_the_linear_expert_for_pv() -> None:
    p = next(p for p in load_profiles(CACHE) if p.kind == "pv")
    state = SeriesState(900, 96, model_name="river_pick", site=Site())
    for i in range(96 * 120, 96 * 150):
        observe(state, float(p.kw[i]), T0_MS + i * 900_000)
    assert isinstance(state.model, Selector) and state.model.best == "river_lad", state.model.errors
    assert state.mae()["model"] < 0.9 * state.mae()["smart_persistence"]
