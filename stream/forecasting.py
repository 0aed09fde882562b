"""One-step-ahead forecasters behind one small protocol, and the per-series state they learn on.

Every model, River's or a baseline, has `learn_one(x, y)` and `predict_one(x)`, so the Faust
workers, the prequential report and the benchmarks run the very same objects. The learned models
forecast a correction to the series' own baseline (persistence for load, smart persistence for PV,
`x["base"]`), in units of the series' level: untrained, they are that baseline, and one learning
rate serves a 2 kW home and a 78 kW PV plant alike. Features: `citygrid.stream.features`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from river import linear_model, optim, preprocessing, tree

from citygrid.stream.calendar_days import day_type
from citygrid.stream.features import VALUE_KEYS, DayProfile, Solar, features, slot_of
from citygrid.stream.quantiles import ResidualQuantiles
from citygrid.stream.scores import Scores
from citygrid.stream.solar import Site


@runtime_checkable
class OnlineModel(Protocol):
    """What every online forecaster and baseline provides (River's regressor protocol)."""

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Learn from one example."""
        ...

    def predict_one(self, x: dict[str, float]) -> float:
        """Predict the target of one example."""
        ...


class Persistence:
    """Baseline: the next interval looks like the last one."""

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Nothing to learn."""

    def predict_one(self, x: dict[str, float]) -> float:
        """The last observed value."""
        return x["last"]


class SeasonalNaive:
    """Baseline: the next interval looks like the same interval one season (e.g. a day) ago."""

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Nothing to learn."""

    def predict_one(self, x: dict[str, float]) -> float:
        """The value one season before the target interval (the last value until a season is seen)."""
        return x.get("season", x["last"])


class SmartPersistence:
    """Baseline for PV: the last clear-sky index under the target interval's clear sky (`x["base"]`,
    see features._sun); persistence for series without a sun."""

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Nothing to learn."""

    def predict_one(self, x: dict[str, float]) -> float:
        """The smart-persistence forecast."""
        return x.get("base", x["last"])


class DeltaRegressor:
    """A River regressor that learns the change from the last value rather than the level (the
    original `river_linear`, kept so its figures stay reproducible)."""

    def __init__(self, regressor: OnlineModel) -> None:
        self.regressor = regressor

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Learn the change from `x['last']` to `y`."""
        self.regressor.learn_one(x, y - x["last"])

    def predict_one(self, x: dict[str, float]) -> float:
        """Last value plus the predicted change."""
        return x["last"] + self.regressor.predict_one(x)


class BaseCorrection:
    """A River regressor that learns the error of the series' baseline (`x["base"]`), in units of
    the series' level (a slow average of |y|), from features in the same units."""

    def __init__(self, regressor: OnlineModel, decay: float = 0.001, base: str = "base") -> None:
        self.regressor = regressor
        self.decay = decay
        self.base = base
        self.level = 0.0

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        s = self.level or 1.0
        return {k: (v / s if k in VALUE_KEYS else v) for k, v in x.items()}

    def _target(self, x: dict[str, float], y: float) -> float:
        return (y - x[self.base]) / self.level

    def _back(self, x: dict[str, float], correction: float) -> float:
        return x[self.base] + self.level * correction

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Learn the baseline's error on this example, then update the level."""
        if self.level > 0:
            self.regressor.learn_one(self._scaled(x), self._target(x, y))
        self.level = abs(y) if self.level == 0 else self.level + self.decay * (abs(y) - self.level)

    def predict_one(self, x: dict[str, float]) -> float:
        """Baseline plus the predicted correction."""
        if self.level <= 0:
            return x[self.base]
        return self._back(x, self.regressor.predict_one(self._scaled(x)) or 0.0)


class LogCorrection(BaseCorrection):
    """BaseCorrection in log space: features and target are log(value/level + floor), so the model
    learns ratios. A home's load moves by factors (a kettle multiplies a 200 W base load, then it
    drops back) and a linear model on kW mistakes those spikes for trend. The median commutes with a
    monotone transform, so absolute loss here still forecasts the median in kW. `floor` (a tenth of
    the level) keeps zero finite; negative values (a net meter exporting) read as zero, which is why
    this model runs beside the linear one under a Selector rather than alone."""

    MAX_LOG = 50.0  # exp() overflows past ~709; a diverged model must give a number, not raise

    def __init__(self, regressor: OnlineModel, decay: float = 0.001, base: str = "last",
                 floor: float = 0.1) -> None:
        super().__init__(regressor, decay, base)
        self.floor = floor

    def _log(self, v: float) -> float:
        return math.log(max(v, 0.0) / self.level + self.floor)

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        return {k: (self._log(v) if k in VALUE_KEYS else v) for k, v in x.items()}

    def _target(self, x: dict[str, float], y: float) -> float:
        return self._log(y) - self._log(x[self.base])

    def _back(self, x: dict[str, float], correction: float) -> float:
        z = min(self._log(x[self.base]) + correction, self.MAX_LOG)
        return (math.exp(z) - self.floor) * self.level


class Selector:
    """An online selector: every expert learns every value; the one with the lowest recent absolute
    error (an exponential average; 0.01 is about a day of memory at 15 min) forecasts. Different
    series want different experts (a flat commercial load its day-type profile, a household the LAD
    correction). The experts' forecasts for the pending example are kept from `predict_one` to
    `learn_one` (the worker calls them in that order on the same `x`), so each is computed once."""

    _x: dict[str, float] | None = None  # class defaults: states pickled before the cache still load
    _preds: dict[str, float] = {}  # noqa: RUF012 (replaced, never mutated)

    def __init__(self, experts: dict[str, OnlineModel], decay: float = 0.01) -> None:
        self.experts = experts
        self.decay = decay
        self.errors = dict.fromkeys(experts, 0.0)
        self.best = next(iter(experts))

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Score each expert's forecast for `x`, then let each learn."""
        preds = self._preds if x is self._x else self._predict_all(x)
        for name, model in self.experts.items():
            self.errors[name] += self.decay * (abs(y - preds[name]) - self.errors[name])
            model.learn_one(x, y)
        self.best = min(self.errors, key=self.errors.__getitem__)
        self._x, self._preds = None, {}

    def predict_one(self, x: dict[str, float]) -> float:
        """The currently best expert's forecast."""
        self._x, self._preds = x, self._predict_all(x)
        return self._preds[self.best]

    def _predict_all(self, x: dict[str, float]) -> dict[str, float]:
        return {name: model.predict_one(x) for name, model in self.experts.items()}


def _lad(lr: float = 0.003) -> OnlineModel:
    return preprocessing.StandardScaler() | linear_model.LinearRegression(
        optimizer=optim.SGD(lr), intercept_lr=lr, loss=optim.losses.Quantile(0.5))


def river_linear(lr: float = 0.003, huber_epsilon: float = 0.5) -> OnlineModel:
    """The first forecaster: scaled lags and hour of day into an SGD linear model on the change,
    Huber loss in kW (for a small home that is squared loss: it forecasts the mean, not the median)."""
    return DeltaRegressor(
        preprocessing.StandardScaler()
        | linear_model.LinearRegression(optimizer=optim.SGD(lr), intercept_lr=lr,
                                        loss=optim.losses.Huber(huber_epsilon))
    )


def river_lad() -> OnlineModel:
    """The linear expert: the change from the last value, in units of the series' level, by an SGD linear
    model with absolute (median) loss, since MAE is what is judged and load jumps are heavy-tailed.
    The rate was chosen on SimBench profiles (0.001-0.03 tried; see reports/prequential.md)."""
    return BaseCorrection(_lad(), base="last")


def river_log_lad(lr: float = 0.001) -> OnlineModel:
    """river_lad's features and loss in log space (LogCorrection). Its rate is lower: a log step is
    a ratio, larger than a level-scaled kW step (0.0003-0.01 tried on the SimBench H0 homes)."""
    return LogCorrection(_lad(lr))


def river_pick() -> OnlineModel:
    """The workers' default: per series, whichever of river_lad and river_log_lad erred less over
    about the last five days (decay 0.002 at 15 min). Homes mostly pick the log model, PV the linear
    one: a choice learnt per series, not a setting per kind of device."""
    return Selector({"river_lad": river_lad(), "river_log_lad": river_log_lad()}, decay=0.002)


def river_tree() -> OnlineModel:
    """A Hoeffding tree whose leaves are LAD linear models, on the same target as river_lad."""
    leaf = linear_model.LinearRegression(optimizer=optim.SGD(0.003), intercept_lr=0.003,
                                         loss=optim.losses.Quantile(0.5))
    return BaseCorrection(preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor(
        grace_period=200, max_depth=4, leaf_prediction="model", leaf_model=leaf), base="last")


def river_select() -> OnlineModel:
    """Per-series selection among river_lad, river_tree, the day-ago value and smart persistence."""
    return Selector({"river_lad": river_lad(), "river_tree": river_tree(), "seasonal_naive": SeasonalNaive(),
                     "smart_persistence": SmartPersistence()})


MODELS: dict[str, Callable[[], OnlineModel]] = {
    "river_pick": river_pick,
    "river_lad": river_lad,
    "river_log_lad": river_log_lad,
    "river_select": river_select,
    "river_tree": river_tree,
    "river_linear": river_linear,
    "persistence": Persistence,
    "seasonal_naive": SeasonalNaive,
    "smart_persistence": SmartPersistence,
}


@dataclass
class SeriesState:
    """Everything one series (one device's or one feeder's value) needs to forecast its next interval.

    Plain picklable data, so the Faust table stores it and its changelog restores it. `site` is set
    for PV: it switches on the clear-sky features, the smart-persistence baseline and daylight-only
    scoring.
    """

    step_s: int
    season: int
    model_name: str = "river_pick"
    site: Site | None = None
    model: OnlineModel = field(default=None)  # type: ignore[assignment]
    history: deque[float] = field(default_factory=deque)
    profile: DayProfile = field(default=None)  # type: ignore[assignment]
    solar: Solar | None = None
    quantiles: ResidualQuantiles = field(default_factory=ResidualQuantiles)
    scores: Scores = field(default_factory=Scores)
    pending_x: dict[str, float] | None = None
    pending_pred: float | None = None
    pending_ts_ms: int = 0
    pending_bands: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n: int = 0  # values learned

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = MODELS[self.model_name]()
        if self.profile is None:
            self.profile = DayProfile(self.season)
        if self.site is not None and self.solar is None:
            self.solar = Solar(self.site)
        self.history = deque(self.history, maxlen=self.season)

    def mae(self) -> dict[str, float]:
        """Prequential MAE of the model and the baselines over the scored steps so far."""
        return self.scores.mae()


@dataclass(frozen=True)
class Step:
    """What one observation produced: the error of the forecast made for it, and the next forecast
    with its P10/P50/P90."""

    error: float | None
    forecast: float
    target_ts_ms: int
    bands: tuple[float, float, float]


def _baselines(x: dict[str, float]) -> dict[str, float]:
    return {"persistence": x["last"], "seasonal_naive": x.get("season", x["last"]),
            "smart_persistence": x.get("base", x["last"])}


def _learn(state: SeriesState, value: float) -> float:
    """Score the pending forecast against `value` (PV: in daylight only), then learn from it. The
    quantiles learn on the scored steps, so their coverage is calibrated where it is judged."""
    x, pred, target = state.pending_x, state.pending_pred, state.pending_ts_ms
    assert x is not None and pred is not None
    error = value - pred
    if state.solar is None or state.solar.table.daylight(target):
        state.scores.add(value, pred, _baselines(x), state.pending_bands)
        state.quantiles.learn(error, target // 3_600_000 % 24)
    state.model.learn_one(x, value)
    state.n += 1
    return error


def observe(state: SeriesState, value: float, ts_ms: int) -> Step:
    """Prequential step: score the forecast made for this value, learn from it, forecast the next."""
    error = _learn(state, value) if state.pending_x is not None and state.pending_pred is not None else None
    state.profile.learn(day_type(ts_ms), slot_of(ts_ms, state.step_s, state.season), value)
    state.history.append(value)
    x = features(state.history, ts_ms, state.step_s, state.season, state.profile, state.solar)
    pred = float(state.model.predict_one(x))
    if not math.isfinite(pred):
        pred = x["base"]  # a diverged model must not emit NaN; the baseline is the safe answer
    target = ts_ms + state.step_s * 1000
    floor = None
    if state.solar is not None:
        # No negative PV. Night is learnt (the model sees the clear sky), not forced to zero: a device
        # whose clock or time zone is off must still get forecasts that follow its data.
        pred, floor = max(pred, 0.0), 0.0
    bands = state.quantiles.bands(pred, target // 3_600_000 % 24, floor)
    state.pending_x, state.pending_pred, state.pending_ts_ms, state.pending_bands = x, pred, target, bands
    return Step(error, pred, target, bands)


def forecast_fields(state: SeriesState, step: Step) -> dict[str, float | int | None]:
    """The Forecast record's forecast, quantile and skill fields for `step` (devices and groups alike)."""
    mae = state.mae()
    p10, p50, p90 = step.bands
    return {"ts_ms": step.target_ts_ms, "forecast": step.forecast, "p10": p10, "p50": p50, "p90": p90,
            "n": state.n, "scored": state.scores.n, "mae": mae["model"],
            "mae_persistence": mae["persistence"],
            "mae_seasonal_naive": mae["seasonal_naive"],
            "mae_smart_persistence": mae["smart_persistence"] if state.solar is not None else None,
            "coverage_p10_p90": state.scores.coverage() if state.scores.n else None}
