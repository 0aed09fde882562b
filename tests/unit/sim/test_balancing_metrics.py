"""The balancing report's figures on a tiny case computed by hand."""

from __future__ import annotations

import numpy as np

from citygrid.sim.balancing import Sample
from citygrid.sim.balancing_metrics import Tally


def test_peak_imbalance_shortfall_and_self_consumption_on_two_intervals() -> None:
    tally = Tally(interval_s=900)
    # Two participants: a PV owner (exports) and a household (imports), Wh per quarter-hour.
    tally.add(np.array([300.0, -500.0]), np.array([250.0, -500.0]), np.array([1_000.0, 0.0]), judged=2)
    tally.add(np.array([100.0, -900.0]), np.array([200.0, -700.0]), np.array([400.0, 0.0]), judged=2,
              flagged=1)
    m = tally.summary()
    assert m["peak_import_kw"] == 800 * 4 / 1000  # interval 2: 900 - 100 Wh in a quarter-hour = 3.2 kW
    assert m["peak_export_kw"] == 0
    assert m["imbalance_kwh"] == (50 + 0 + 100 + 200) / 1000
    assert m["imbalance_signed_kwh"] == (50 - 100 - 200) / 1000
    # Shortfall: interval 2's seller exported 100 of 200 sold; the buyer imported more than it bought (no
    # shortfall: energy taken beyond the trade is an imbalance, not a broken promise).
    assert m["shortfall_kwh"] == 100 / 1000
    assert m["flagged_share"] == 0.25
    assert m["self_consumption"] == 1 - (300 + 100) / 1_400
    assert m["traded_kwh"] == (250 + 500 + 200 + 700) / 1000


def test_the_sample_takes_whole_days_spread_over_the_year() -> None:
    steps = list(Sample(days=2, period=28, start=14).steps(96 * 366))
    days = sorted({s // 96 for s in steps})
    assert days[:4] == [14, 15, 42, 43] and len(steps) == 96 * len(days)
    assert len(days) == 2 * 13  # 2016 has 366 days: 13 periods of 28 start on or after day 14
