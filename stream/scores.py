"""How forecasts are judged: MAE against every baseline, skill, pinball loss and interval coverage.

One running tally per series, kept by the Faust workers (published in each Forecast record) and by
the prequential report alike. PV is scored only in daylight (sun 5° or more above the horizon at
the target interval): night-time zeros are forecast perfectly by everything and would flatter any
model (about half of a year's quarter-hours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citygrid.stream.quantiles import TAUS


def pinball(y: float, q: float, tau: float) -> float:
    """Pinball (quantile) loss of quantile forecast `q` at level `tau` for outcome `y`."""
    d = y - q
    return tau * d if d >= 0 else (tau - 1) * d


def skill(mae_model: float, mae_baseline: float) -> float:
    """1 - MAE/MAE_baseline: the share of the baseline's error the model removes (NaN if none)."""
    return 1 - mae_model / mae_baseline if mae_baseline > 0 else float("nan")


BASELINES = ("persistence", "seasonal_naive", "smart_persistence")


@dataclass
class Scores:
    """Running sums over the scored steps of one series."""

    n: int = 0
    abs_model: float = 0.0
    abs_baseline: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BASELINES, 0.0))
    pinball: list[float] = field(default_factory=lambda: [0.0] * len(TAUS))
    covered: int = 0  # P10 <= y <= P90

    def add(self, y: float, forecast: float, baselines: dict[str, float],
            bands: tuple[float, float, float]) -> None:
        """Score one step: the point forecast, each baseline's forecast, and the quantiles."""
        self.n += 1
        self.abs_model += abs(y - forecast)
        for name, b in baselines.items():
            self.abs_baseline[name] += abs(y - b)
        for i, (q, tau) in enumerate(zip(bands, TAUS, strict=True)):
            self.pinball[i] += pinball(y, q, tau)
        self.covered += bands[0] <= y <= bands[2]

    def mae(self) -> dict[str, float]:
        """MAE of the model ("model") and of every baseline so far."""
        n = max(self.n, 1)
        return {"model": self.abs_model / n} | {k: v / n for k, v in self.abs_baseline.items()}

    def coverage(self) -> float:
        """Share of scored values inside their P10-P90 band (0.8 is right)."""
        return self.covered / self.n if self.n else float("nan")

    def mean_pinball(self) -> list[float]:
        """Mean pinball loss at P10, P50 and P90."""
        n = max(self.n, 1)
        return [p / n for p in self.pinball]
