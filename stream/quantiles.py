"""P10/P50/P90 around a point forecast, by online quantile tracking of its scaled residuals.

Each quantile is an offset from the point forecast, in units of the series' typical error at that
hour of day (an exponential average of |residual| per hour, 24 floats: PV errs most at noon, load in
the evening). After each residual the offset takes one pinball-loss subgradient step,
    q_tau ← q_tau + eta (tau - 1[r < q_tau]),
which is the quantile-tracking step of conformal PID control (Angelopoulos, Candès & Tibshirani,
NeurIPS 2023): whatever the model, the long-run share of values below q_tau converges to tau, so the
P10-P90 band covers about 80 %. It costs three floats and 24 averages per series, a small fraction
of one River update, which is why it was preferred to three quantile regressors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TAUS = (0.1, 0.5, 0.9)


@dataclass
class ResidualQuantiles:
    """Tracked residual quantiles of one series (picklable, a few dozen floats)."""

    rate: float = 0.02  # eta, in units of the hourly error scale
    scale_decay: float = 0.05  # per observation of that hour: about 20 days of memory
    offsets: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0])
    scales: list[float] = field(default_factory=lambda: [0.0] * 24)

    def bands(self, forecast: float, hour: int, floor: float | None = None) -> tuple[float, float, float]:
        """(P10, P50, P90) for a point `forecast` of an interval starting at `hour` (UTC)."""
        s = self._scale(hour)
        qs = sorted(forecast + o * s for o in self.offsets)  # tracking may cross them early on
        if floor is not None:
            qs = [max(q, floor) for q in qs]
        return qs[0], qs[1], qs[2]

    def learn(self, residual: float, hour: int) -> None:
        """Update the offsets with the residual (value - point forecast), then that hour's scale."""
        s = self._scale(hour)
        if s > 0:
            z = residual / s
            pairs = zip(self.offsets, TAUS, strict=True)
            self.offsets = [o + self.rate * (tau - (z < o)) for o, tau in pairs]
        old = self.scales[hour]
        self.scales[hour] = abs(residual) if old == 0 else old + self.scale_decay * (abs(residual) - old)

    def _scale(self, hour: int) -> float:
        s = self.scales[hour]
        if s > 0:
            return s
        seen = [v for v in self.scales if v > 0]
        return sum(seen) / len(seen) if seen else 0.0
