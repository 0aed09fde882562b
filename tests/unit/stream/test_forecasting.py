"""Forecasters and baselines share one protocol; the River model beats persistence on real PV."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from citygrid.sim.profiles import load_profiles
from citygrid.stream.forecasting import (
    MODELS,
    OnlineModel,
    Persistence,
    SeasonalNaive,
    SeriesState,
    features,
    observe,
)

CACHE = Path(__file__).resolve().parents[3] / ".cache"
T0 = 1_750_000_000_000


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_follows_the_protocol(name: str) -> None:
    model = MODELS[name]()
    assert isinstance(model, OnlineModel)
    x = features(deque([1.0, 2.0, 3.0]), T0, 900, 96)
    model.learn_one(x, 4.0)
    assert isinstance(model.predict_one(x), float)


def test_features_point_one_season_back_from_the_target() -> None:
    history = deque(float(i) for i in range(96))
    x = features(history, T0, 900, 96)
    assert x["last"] == 95.0 and x["trend"] == 1.0
    assert x["season"] == 0.0  # 96 steps before the target interval (step 96)
    assert sum(v for k, v in x.items() if k.startswith("h")) == 1.0


def test_baselines_predict_last_and_seasonal_values() -> None:
    x = {"last": 2.0, "season": 5.0}
    assert Persistence().predict_one(x) == 2.0
    assert SeasonalNaive().predict_one(x) == 5.0
    assert SeasonalNaive().predict_one({"last": 2.0}) == 2.0


def test_an_untrained_model_falls_back_to_persistence() -> None:
    state = SeriesState(900, 96)
    step = observe(state, 3.5, T0)
    assert step.error is None and step.forecast == pytest.approx(3.5)
    assert step.target_ts_ms == T0 + 900_000


def test_the_prequential_errors_are_scored_before_learning() -> None:
    state = SeriesState(900, 4, model_name="persistence")
    for i, v in enumerate([1.0, 3.0, 2.0]):
        observe(state, v, T0 + i * 900_000)
    assert state.n == 2
    assert state.mae()["model"] == pytest.approx((2.0 + 1.0) / 2)
    assert state.mae()["persistence"] == state.mae()["model"]


def test_river_forecaster_beats_persistence_on_a_real_pv_profile() -> None:
    pv = next(p for p in load_profiles(CACHE) if p.kind == "pv")
    state = SeriesState(900, 96)
    for i, v in enumerate(pv.kw[96 * 120:96 * 150]):
        observe(state, float(v), T0 + i * 900_000)
    mae = state.mae()
    assert mae["model"] < 0.8 * mae["persistence"], mae
