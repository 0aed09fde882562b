"""Prequential evaluation of the stream forecasters on real data, written as a report.

Every series is replayed through the very `observe` step the Faust workers run:
each value first scores the forecast made for it, then is learned. The model's
MAE is set against persistence and seasonal-naive baselines on the same steps.
Energy: SimBench household load and PV profiles (a year, 15 min) and their
feeder sums; traffic: SUMO induction-loop counts and their intersection sums.
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from citygrid.settings import StreamSettings
from citygrid.stream.errors import EvaluationDataMissing
from citygrid.stream.forecasting import SeriesState, observe

T0_MS = 1_704_067_200_000  # 2024-01-01T00:00Z: SimBench profiles start on 1 January


@dataclass(frozen=True)
class SeriesResult:
    """Prequential MAE of one series."""

    domain: str
    level: str  # prosumer / feeder, detector / intersection
    kind: str
    name: str
    steps: int
    mae_model: float
    mae_persistence: float
    mae_seasonal_naive: float

    @property
    def vs_persistence(self) -> float:
        """Model MAE over persistence MAE (below 1: the model wins)."""
        return self.mae_model / self.mae_persistence if self.mae_persistence else float("nan")

    @property
    def vs_seasonal(self) -> float:
        """Model MAE over seasonal-naive MAE."""
        return self.mae_model / self.mae_seasonal_naive if self.mae_seasonal_naive else float("nan")


def evaluate_series(values: Iterable[float], step_s: int, season: int, model: str) -> dict[str, float]:
    """Run one series through the stream's forecaster; its MAE and the baselines'."""
    state = SeriesState(step_s, season, model_name=model)
    for i, v in enumerate(values):
        observe(state, float(v), T0_MS + i * step_s * 1000)
    return {"steps": state.n, **state.mae()}


def _result(domain: str, level: str, kind: str, name: str, mae: dict[str, float]) -> SeriesResult:
    return SeriesResult(domain, level, kind, name, int(mae["steps"]), mae["model"], mae["persistence"],
                        mae["seasonal_naive"])


def energy_results(cache_dir: Path, s: StreamSettings, days: int | None = None) -> list[SeriesResult]:
    """Every SimBench prosumer's meter and PV series, and the feeder's summed load and PV."""
    from citygrid.sim.profiles import load_profiles

    profiles = load_profiles(cache_dir)
    if not profiles:
        raise EvaluationDataMissing(f"no SimBench profiles under {cache_dir}; run `citygrid demo` once")
    n = days * 86400 // s.energy_step_s if days else None
    out = []
    feeder: dict[str, np.ndarray] = {}
    members: dict[str, int] = defaultdict(int)
    for p in profiles:
        kw = p.kw[:n]
        feeder[p.kind] = feeder.get(p.kind, 0) + kw
        members[p.kind] += 1
        mae = evaluate_series(kw, s.energy_step_s, s.energy_season_steps, s.model)
        out.append(_result("energy", "prosumer", p.kind, p.name, mae))
    for kind, kw in sorted(feeder.items()):
        mae = evaluate_series(kw, s.energy_step_s, s.energy_season_steps, s.model)
        out.append(_result("energy", "feeder", kind, f"feeder {kind} (sum of {members[kind]} series)", mae))
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
    for det, series in counts.items():
        junctions[intersection_of(det)] = junctions[intersection_of(det)] + series
        mae = evaluate_series(series, s.traffic_step_s, s.traffic_season_steps, s.model)
        out.append(_result("traffic", "detector", "vehicles", det, mae))
    for j, series in sorted(junctions.items()):
        mae = evaluate_series(series, s.traffic_step_s, s.traffic_season_steps, s.model)
        out.append(_result("traffic", "intersection", "vehicles", j, mae))
    return out


def _summary(rows: list[SeriesResult]) -> list[dict]:
    groups: dict[tuple[str, str, str], list[SeriesResult]] = defaultdict(list)
    for r in rows:
        groups[(r.domain, r.level, r.kind)].append(r)
    return [{
        "domain": d, "level": lvl, "kind": k, "series": len(g),
        "beats_persistence": sum(r.vs_persistence < 1 for r in g),
        "beats_seasonal_naive": sum(r.vs_seasonal < 1 for r in g),
        "median_vs_persistence": float(np.median([r.vs_persistence for r in g])),
        "median_vs_seasonal_naive": float(np.median([r.vs_seasonal for r in g])),
    } for (d, lvl, k), g in sorted(groups.items())]


def write_report(rows: list[SeriesResult], out_dir: Path, s: StreamSettings, notes: list[str]) -> Path:
    """Write prequential.md and prequential.json; return the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = _summary(rows)
    meta = {"generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "model": s.model,
            "python": platform.python_version(), "settings": s.model_dump(), "notes": notes}
    (out_dir / "prequential.json").write_text(json.dumps(
        {"meta": meta, "summary": summary,
         "series": [asdict(r) | {"vs_persistence": r.vs_persistence, "vs_seasonal_naive": r.vs_seasonal}
                    for r in rows]}, indent=1))
    lines = [
        "# Prequential evaluation of the stream forecasters",
        "",
        f"Regenerate with `citygrid stream evaluate`. Generated {meta['generated_utc']}; model "
        f"`{s.model}` (the one the Faust workers run). Each value scores the one-step-ahead forecast "
        "made for it before it is learned (test-then-train). Ratios are model MAE / baseline MAE: "
        "below 1 means the model wins.",
        "",
        *[f"- {n}" for n in notes],
        "",
        "## Summary",
        "",
        "| domain | level | kind | series | beats persistence | beats seasonal-naive "
        "| median MAE ratio vs persistence | median vs seasonal-naive |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {g['domain']} | {g['level']} | {g['kind']} | {g['series']} | {g['beats_persistence']} "
          f"| {g['beats_seasonal_naive']} | {g['median_vs_persistence']:.3f} "
          f"| {g['median_vs_seasonal_naive']:.3f} |" for g in summary],
        "",
        "## Every series",
        "",
        "| domain | level | kind | series | steps | MAE model | MAE persistence | MAE seasonal-naive "
        "| vs persistence | vs seasonal-naive |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {r.domain} | {r.level} | {r.kind} | {r.name} | {r.steps} | {r.mae_model:.4f} "
          f"| {r.mae_persistence:.4f} | {r.mae_seasonal_naive:.4f} | {r.vs_persistence:.3f} "
          f"| {r.vs_seasonal:.3f} |" for r in rows],
        "",
    ]
    md = out_dir / "prequential.md"
    md.write_text("\n".join(lines))
    return md
