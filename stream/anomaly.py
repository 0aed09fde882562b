"""Anomaly and concept-drift detection on one series, each behind one small protocol.

Detectors score a reading before learning it. The default scores the forecast's
residual with River's GaussianScorer over a rolling week (a reading the model
did not expect); HalfSpaceTrees on (value, residual) is the alternative, better
at multivariate oddities but ~40x costlier to checkpoint per device. ADWIN
watches the forecast's absolute error, so a change in how well the model does
(a new appliance, a shaded panel) is counted as drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from river import anomaly, drift, preprocessing


class Detector(Protocol):
    """What every anomaly detector provides: score first, then learn."""

    def score_one(self, value: float, error: float) -> float:
        """Anomaly score in [0, 1]; higher is stranger."""
        ...

    def learn_one(self, value: float, error: float) -> None:
        """Learn one reading."""
        ...


class ResidualGaussian:
    """River's GaussianScorer on the forecast residual: cheap state (a rolling window of residuals)."""

    def __init__(self, window: int = 96 * 7, grace: int = 96) -> None:
        self.scorer = anomaly.GaussianScorer(window_size=window, grace_period=grace)

    def score_one(self, value: float, error: float) -> float:
        """Two-sided Gaussian tail score of the residual."""
        return self.scorer.score_one(None, error)

    def learn_one(self, value: float, error: float) -> None:
        """Add the residual to the window."""
        self.scorer.learn_one(None, error)


class HalfSpace:
    """River's HalfSpaceTrees on min-max scaled (value, |residual|)."""

    def __init__(self, seed: int = 42) -> None:
        self.model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=8, height=5, window_size=96, seed=seed)

    def score_one(self, value: float, error: float) -> float:
        """Mass-based score of the point."""
        return self.model.score_one({"value": value, "abs_error": abs(error)})

    def learn_one(self, value: float, error: float) -> None:
        """Update the trees' mass profiles."""
        self.model.learn_one({"value": value, "abs_error": abs(error)})


DETECTORS: dict[str, Callable[[], Detector]] = {
    "gaussian_residual": ResidualGaussian,
    "half_space_trees": HalfSpace,
}


@dataclass
class Watch:
    """A series' anomaly detector and drift detector, with what they have seen."""

    detector_name: str = "gaussian_residual"
    threshold: float = 0.99999
    warmup: int = 96
    detector: Detector = field(default=None)  # type: ignore[assignment]
    drift_detector: drift.ADWIN = field(default_factory=lambda: drift.ADWIN(delta=0.002))
    seen: int = 0
    drifts: int = 0

    def __post_init__(self) -> None:
        if self.detector is None:
            self.detector = DETECTORS[self.detector_name]()

    def score(self, value: float, error: float | None) -> float | None:
        """Anomaly score of this reading (None while warming up); the detector then learns it."""
        if error is None:
            return None
        score = self.detector.score_one(value, error) if self.seen >= self.warmup else None
        self.detector.learn_one(value, error)
        self.seen += 1
        return score

    def is_anomaly(self, score: float | None) -> bool:
        """Whether a score is high enough to raise an alert."""
        return score is not None and score >= self.threshold

    def drifted(self, error: float | None) -> bool:
        """Feed the forecast's absolute error to ADWIN; True when its mean has shifted."""
        if error is None:
            return False
        self.drift_detector.update(abs(error))
        if self.drift_detector.drift_detected:
            self.drifts += 1
            return True
        return False
