"""The prequential report's pieces: junction mapping, series scoring, and the written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from citygrid.settings import StreamSettings
from citygrid.sim.prequential import SeriesResult, category_of, evaluate_series, intersection_of
from citygrid.sim.prequential_report import targets, write_report
from citygrid.stream.solar import Site

MAE = {"model": 0.9, "persistence": 1.0, "seasonal_naive": 2.0, "smart_persistence": 1.0}


def test_loops_map_to_the_junction_their_lane_enters() -> None:
    assert intersection_of("e1_A0A1_0") == "A1"
    assert intersection_of("e1_B2C2_1") == "C2"


def test_simbench_profiles_fall_into_categories() -> None:
    assert category_of("meter", "H0-A") == "household" and category_of("meter", "G4-B") == "commercial"
    assert category_of("meter", "L2-A") == "agricultural" and category_of("pv", "PV5") == "pv"


def test_a_daily_pattern_is_learned_better_than_persistence_with_calibrated_bands() -> None:
    t = np.arange(96 * 20)
    series = 2 + np.sin(2 * np.pi * t / 96) + 0.05 * np.random.default_rng(1).standard_normal(t.size)
    scores = evaluate_series(series, 900, 96, "river_lad")
    assert scores["steps"] == t.size - 1
    assert scores["mae"]["model"] < scores["mae"]["persistence"]
    assert 0.7 < scores["coverage"] < 0.9


def test_pv_is_scored_in_daylight_only_against_smart_persistence() -> None:
    t = np.arange(96 * 10)
    sun = np.clip(np.sin(2 * np.pi * (t % 96 - 24) / 96 / 1.4), 0, None)  # a crude day shape
    scores = evaluate_series(sun, 900, 96, "river_lad", Site(), t0_ms=1_466_035_200_000)
    assert 0.5 * t.size < scores["steps"] < 0.75 * t.size  # June: about 15 h of the 24 scored
    assert set(scores["mae"]) == {"model", "persistence", "seasonal_naive", "smart_persistence"}


def test_the_report_is_written_as_markdown_and_json_with_the_targets(tmp_path: Path) -> None:
    rows = [SeriesResult("energy", "g", "prosumer", "household", "H0-A", "river_lad", 10, MAE, 0.8,
                         [0.1, 0.2, 0.1], 3),
            SeriesResult("energy", "g", "prosumer", "pv", "PV5", "river_lad", 10, MAE | {"model": 0.5}, 0.78,
                         [0.1, 0.2, 0.1]),
            SeriesResult("energy", "g", "prosumer", "pv hourly", "PV5", "river_lad", 10, MAE | {"model": 0.8},
                         0.81, [0.1, 0.2, 0.1])]
    md = write_report(rows, tmp_path, StreamSettings(), ["a note"])
    text = md.read_text()
    assert "| g | prosumer | household | H0-A | river_lad | 3 | 10 | 0.9000 | 1.0000 | 2.0000 | 1.0000 " \
           "| +10.0% | +55.0% | +10.0% | 80.0% |" in text
    verdicts = {what.split(" ")[0]: ok for what, _got, ok in targets(rows, "river_lad")}
    assert verdicts == {"PV": True, "household": False, "P10-P90": True}
    data = json.loads((tmp_path / "prequential.json").read_text())
    assert data["summary"][0]["series"] == 1 and data["meta"]["notes"] == ["a note"]
