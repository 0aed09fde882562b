"""Prequential evaluation of the stream forecasters on real data, written as a report.

Every series is replayed through the very `observe` step the Faust workers run: each value first
scores the forecast made for it (and its P10/P50/P90), then is learned. The model's MAE is set
against every baseline on the same steps: persistence, seasonal naive (a day before) and, for PV,
smart persistence (the last clear-sky index under the target's clear sky, pvlib at the grid's site);
PV is scored in daylight only. Energy: SimBench grids, a year at 15 min, each distinct SimBench
profile once (a grid's devices are a handful of profiles, scaled: scaling changes no skill) and the
feeder sums of every device; PV also at its native hourly resolution, since SimBench's 15-minute PV
is hourly data interpolated. Traffic: SUMO induction-loop counts and their intersection sums.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from citygrid.settings import StreamSettings
from citygrid.stream.errors import EvaluationDataMissing
from citygrid.stream.forecasting import SeriesState, observe
from citygrid.stream.scores import skill
from citygrid.stream.solar import Site

T0_MS = 1_451_606_400_000  # 2016-01-01T00:00Z: SimBench's profiles are 2016 in UTC quarter-hours
CATEGORIES = {"H": "household", "G": "commercial", "L": "agricultural"}


@dataclass(frozen=True)
class SeriesResult:
    """Prequential scores of one series under one model."""

    domain: str
    grid: str
    level: str  # prosumer / feeder, detector / intersection
    category: str  # household, commercial, agricultural, pv, pv hourly, vehicles
    name: str
    model: str
    steps: int  # scored steps (PV: daylight only)
    mae: dict[str, float]  # "model" and every baseline
    coverage: float  # share of values inside P10-P90
    pinball: list[float]  # mean pinball loss at P10, P50, P90
    members: int = 1  # devices that replay this very profile (scaled)
    extra: dict = field(default_factory=dict)

    def skill(self, baseline: str) -> float:
        """1 - MAE_model / MAE_baseline."""
        return skill(self.mae["model"], self.mae[baseline])


def evaluate_series(values: Iterable[float], step_s: int, season: int, model: str,
                    site: Site | None = None, t0_ms: int = T0_MS) -> dict:
    """Run one series through the stream's forecaster; its scores and the baselines'."""
    state = SeriesState(step_s, season, model_name=model, site=site)
    for i, v in enumerate(values):
        observe(state, float(v), t0_ms + i * step_s * 1000)
    return {"steps": state.scores.n, "mae": state.mae(), "coverage": state.scores.coverage(),
            "pinball": state.scores.mean_pinball()}


def _result(domain: str, grid: str, level: str, category: str, name: str, model: str, scores: dict,
            members: int = 1) -> SeriesResult:
    return SeriesResult(domain, grid, level, category, name, model, int(scores["steps"]), scores["mae"],
                        scores["coverage"], scores["pinball"], members)


def category_of(kind: str, profile: str) -> str:
    """household / commercial / agricultural for SimBench load profiles (H0-*, G*-*, L*-*), else the kind."""
    return CATEGORIES.get(profile[:1], "other") if kind == "meter" else kind


def grid_results(cache_dir: Path, grid: str, s: StreamSettings, model: str,
                 days: int | None) -> list[SeriesResult]:
    """One grid: each distinct profile once, PV also hourly, and the feeder sums of all its devices."""
    from citygrid.sim.profiles import grid_site, load_profiles

    profiles = load_profiles(cache_dir, grid)
    site = Site(*grid_site(cache_dir, grid))
    n = days * 86400 // s.energy_step_s if days else None
    step, season = s.energy_step_s, s.energy_season_steps
    distinct: dict[tuple[str, str], list] = defaultdict(list)
    feeder: dict[str, np.ndarray] = {}
    for p in profiles:
        distinct[(p.kind, p.profile)].append(p)
        feeder[p.kind] = feeder.get(p.kind, 0) + p.kw[:n]
    out = []
    for (kind, profile), members in sorted(distinct.items()):
        pv = site if kind == "pv" else None
        kw = members[0].kw[:n]
        out.append(_result("energy", grid, "prosumer", category_of(kind, profile), profile, model,
                           evaluate_series(kw, step, season, model, pv), len(members)))
        if kind == "pv":  # the hourly values SimBench interpolated: no straight-line steps to exploit
            out.append(_result("energy", grid, "prosumer", "pv hourly", profile, model,
                               evaluate_series(kw[::4], step * 4, season // 4, model, pv), len(members)))
    for kind, kw in sorted(feeder.items()):
        pv = site if kind == "pv" else None
        members = sum(p.kind == kind for p in profiles)
        out.append(_result("energy", grid, "feeder", "pv" if pv else "load", f"feeder {kind}", model,
                           evaluate_series(kw, step, season, model, pv), members))
    return out


def energy_results(cache_dir: Path, s: StreamSettings, days: int | None = None, grids: Iterable[str] = (),
                   models: Iterable[str] = ()) -> list[SeriesResult]:
    """Every grid's series under every model (default: the settings' grid list and model)."""
    from citygrid.sim.profiles import GRIDS

    out = []
    for grid in grids or GRIDS:
        for model in models or [s.model]:
            try:
                out += grid_results(cache_dir, grid, s, model, days)
            except OSError as exc:
                raise EvaluationDataMissing(f"no SimBench profiles for {grid} in {cache_dir}: {exc}") from exc
    return out


def intersection_of(detector: str) -> str:
    """The junction a SUMO loop's lane leads into: 'e1_A0A1_0' → 'A1' (edge A0→A1, lane 0)."""
    edge = detector.removeprefix("e1_").rsplit("_", 1)[0]
    return edge[len(edge) // 2:]


def traffic_results(cache_dir: Path, s: StreamSettings) -> list[SeriesResult]:
    """Every SUMO induction loop's counts, and the counts summed per intersection."""
    try:
        from citygrid.sim.traffic.scenario import detector_counts
    except ImportError as exc:
        raise EvaluationDataMissing(f"the SUMO scenario is not available ({exc})") from exc
    counts = detector_counts(cache_dir, seed=1, hours=2.0, interval_s=s.traffic_step_s)
    out = []
    junctions: dict[str, np.ndarray] = defaultdict(lambda: 0)
    step, season = s.traffic_step_s, s.traffic_season_steps
    for det, series in counts.items():
        junctions[intersection_of(det)] = junctions[intersection_of(det)] + series
        out.append(_result("traffic", "sumo grid", "detector", "vehicles", det, s.model,
                           evaluate_series(series, step, season, s.model)))
    for j, series in sorted(junctions.items()):
        out.append(_result("traffic", "sumo grid", "intersection", "vehicles", j, s.model,
                           evaluate_series(series, step, season, s.model)))
    return out
