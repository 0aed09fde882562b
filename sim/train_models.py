"""Train the edge models from real SimBench profiles and export them to ONNX.

Two models, both fed the same feature row (last four values, time of day):
- `load_nowcast`: a random forest predicting a meter's next quarter-hour kW;
- `meter_anomaly`: an isolation forest whose score is low for readings unlike
  any household's normal day (a stuck meter, a spike).
The ONNX files carry their contract as metadata (see citygrid.edge.inference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citygrid.edge.inference import FEATURES, LAGS, features
from citygrid.sim.profiles import STEP_S, load_profiles
from citygrid.storage import atomic_write

# 2016 is SimBench's profile year; its timestamps give the time-of-day features.
YEAR_START_MS = 1_451_606_400_000


def training_rows(cache_dir: Path, kind: str = "meter", max_profiles: int = 12,
                  stride: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): feature rows of real profiles of `kind` and each row's next value."""
    xs, ys = [], []
    for profile in [p for p in load_profiles(cache_dir) if p.kind == kind][:max_profiles]:
        kw = profile.kw.astype(float)
        for i in range(LAGS - 1, len(kw) - 1, stride):
            xs.append(features(kw[i - LAGS + 1:i + 1], YEAR_START_MS + i * STEP_S * 1000))
            ys.append(kw[i + 1])
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)


def _to_onnx(estimator, name: str, version: str, input_value: str, output: str | None,
             label: str) -> bytes:
    from skl2onnx import to_onnx

    onx = to_onnx(estimator, np.zeros((1, len(FEATURES)), dtype=np.float32),
                  target_opset={"": 17, "ai.onnx.ml": 3})
    meta = {"citygrid.name": name, "citygrid.version": version, "citygrid.input": input_value,
            "citygrid.features": ",".join(FEATURES), "citygrid.label": label}
    if output:
        meta["citygrid.output"] = output
    for k, v in meta.items():
        entry = onx.metadata_props.add()
        entry.key, entry.value = k, v
    return onx.SerializeToString()


def train(cache_dir: Path, out_dir: Path, version: str = "1", trees: int = 30,
          max_profiles: int = 12) -> dict[str, Path]:
    """Train both models and write `<name>-<version>.onnx`; return {name: path}."""
    from sklearn.ensemble import IsolationForest, RandomForestRegressor

    x, y = training_rows(cache_dir, max_profiles=max_profiles)
    nowcast = RandomForestRegressor(n_estimators=trees, max_depth=10, random_state=0, n_jobs=1).fit(x, y)
    anomaly = IsolationForest(n_estimators=trees * 2, random_state=0).fit(x)
    out_dir = Path(out_dir)
    written = {}
    for name, est, output, label in (("load_nowcast", nowcast, None, "p_kw_next"),
                                     ("meter_anomaly", anomaly, "scores", "normality")):
        path = out_dir / f"{name}-{version}.onnx"
        atomic_write(path, _to_onnx(est, name, version, "p_kw", output, label))
        written[name] = path
    return written


def fitted_nowcast(cache_dir: Path, trees: int = 30, max_profiles: int = 12):
    """The scikit-learn nowcast and its training rows (the benchmark's baseline)."""
    from sklearn.ensemble import RandomForestRegressor

    x, y = training_rows(cache_dir, max_profiles=max_profiles)
    return RandomForestRegressor(n_estimators=trees, max_depth=10, random_state=0, n_jobs=1).fit(x, y), x
