"""One-step-ahead forecasters behind one small protocol, and the per-series state they learn on.

Every model, River's or a baseline, has `learn_one(x, y)` and `predict_one(x)`,
so the stream app, the prequential report and the benchmarks swap them freely.
Features are built from the series itself (last values, the same interval one
season ago, the hour of day) so no side data is needed at the edge.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from river import linear_model, optim, preprocessing


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


class DeltaRegressor:
    """A River regressor that learns the change from the last value rather than the level.

    An untrained or uncertain model then falls back to persistence instead of to
    zero, and the regressor only has to learn corrections (mean reversion, daily shape).
    """

    def __init__(self, regressor: OnlineModel) -> None:
        self.regressor = regressor

    def learn_one(self, x: dict[str, float], y: float) -> None:
        """Learn the change from `x['last']` to `y`."""
        self.regressor.learn_one(x, y - x["last"])

    def predict_one(self, x: dict[str, float]) -> float:
        """Last value plus the predicted change."""
        return x["last"] + self.regressor.predict_one(x)


def river_linear(lr: float = 0.003, huber_epsilon: float = 0.5) -> OnlineModel:
    """The default forecaster: scaled lags and hour-of-day into an SGD linear model on the change.

    Huber loss because MAE is what is judged and household load has heavy-tailed
    jumps; the small rate was chosen on SimBench profiles (see reports/prequential.md).
    """
    return DeltaRegressor(
        preprocessing.StandardScaler()
        | linear_model.LinearRegression(optimizer=optim.SGD(lr), intercept_lr=lr,
                                        loss=optim.losses.Huber(huber_epsilon))
    )


MODELS: dict[str, Callable[[], OnlineModel]] = {
    "river_linear": river_linear,
    "persistence": Persistence,
    "seasonal_naive": SeasonalNaive,
}


def features(history: deque[float], ts_ms: int, step_s: int, season: int) -> dict[str, float]:
    """Features for forecasting the interval after `history[-1]` (observed at `ts_ms`)."""
    target_s = ts_ms / 1000 + step_s
    hour = int(target_s // 3600 % 24)
    tod = 2 * math.pi * (target_s % 86400) / 86400
    last = history[-1]
    recent = list(history)[-4:]
    x = {"last": last, "mean4": sum(recent) / len(recent), "tod_sin": math.sin(tod),
         "tod_cos": math.cos(tod), f"h{hour:02d}": 1.0}
    if len(history) >= 2:
        x["trend"] = last - history[-2]
    if len(history) >= season:
        # history[-season] is the value one season before the target interval.
        x["season"] = history[-season]
    return x


@dataclass
class SeriesState:
    """Everything one series (one device's value) needs to forecast its next interval.

    Plain picklable data, so the Faust table stores it and its changelog restores it.
    """

    step_s: int
    season: int
    model_name: str = "river_linear"
    model: OnlineModel = field(default=None)  # type: ignore[assignment]
    history: deque[float] = field(default_factory=deque)
    pending_x: dict[str, float] | None = None
    pending_pred: float | None = None
    n: int = 0
    abs_error: float = 0.0  # running sums for MAE since start
    abs_error_persistence: float = 0.0
    abs_error_seasonal: float = 0.0

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = MODELS[self.model_name]()
        self.history = deque(self.history, maxlen=self.season)

    def mae(self) -> dict[str, float]:
        """Prequential MAE of the model and the two baselines so far."""
        n = max(self.n, 1)
        return {"model": self.abs_error / n, "persistence": self.abs_error_persistence / n,
                "seasonal_naive": self.abs_error_seasonal / n}


@dataclass(frozen=True)
class Step:
    """What one observation produced: the error of the forecast made for it, and the next forecast."""

    error: float | None
    forecast: float
    target_ts_ms: int


def observe(state: SeriesState, value: float, ts_ms: int) -> Step:
    """Prequential step: score the forecast made for this value, learn from it, forecast the next."""
    error = None
    if state.pending_x is not None and state.pending_pred is not None:
        x = state.pending_x
        error = value - state.pending_pred
        state.n += 1
        state.abs_error += abs(error)
        state.abs_error_persistence += abs(value - x["last"])
        state.abs_error_seasonal += abs(value - x.get("season", x["last"]))
        state.model.learn_one(x, value)
    state.history.append(value)
    x = features(state.history, ts_ms, state.step_s, state.season)
    pred = float(state.model.predict_one(x))
    if not math.isfinite(pred):
        pred = value  # a diverged model must not emit NaN; persistence is the safe answer
    state.pending_x, state.pending_pred = x, pred
    return Step(error, pred, ts_ms + state.step_s * 1000)
