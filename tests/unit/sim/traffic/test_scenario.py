"""The SUMO scenario is reproducible, has a morning peak, and the loop driver replays its counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from citygrid.settings import CitygridSettings
from citygrid.sim.traffic.loops import SumoLoopReplay
from citygrid.sim.traffic.scenario import Scenario, detector_counts

CACHE = CitygridSettings().paths.cache_dir / "sumo"  # shared with the closed loop and the evaluation


def test_counts_per_detector_and_interval_with_a_morning_peak() -> None:
    counts = detector_counts(CACHE, seed=1, hours=2.0, interval_s=60)
    assert len(counts) == 36  # 3x3 signalised junctions, four approaches each
    assert all(c.shape == (120,) for c in counts.values())
    total = np.sum(list(counts.values()), axis=0)
    quarters = total.reshape(8, 15).sum(axis=1)
    assert quarters[4] > 2 * quarters[0]  # the peak slice far above the first
    assert total.sum() > 1000


def test_same_parameters_same_counts_other_seed_other_counts(tmp_path: Path) -> None:
    a = detector_counts(tmp_path, seed=3, hours=0.25, interval_s=60)
    b = detector_counts(tmp_path, seed=3, hours=0.25, interval_s=60)
    c = detector_counts(tmp_path, seed=4, hours=0.25, interval_s=60)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert len({Scenario(seed=3, hours=0.25).key(), Scenario(seed=4, hours=0.25).key()}) == 2


def test_loop_driver_replays_one_detector() -> None:
    counts = detector_counts(CACHE)
    detector = next(iter(counts))
    got = list(SumoLoopReplay.from_scenario(CACHE, detector, start_ms=1_700_000_000_000).measurements())
    assert [v["vehicles"] for _, v in got] == [float(n) for n in counts[detector]]
    assert got[1][0] - got[0][0] == 60_000
    assert got[0][1]["flow_veh_h"] == got[0][1]["vehicles"] * 60
