"""The prequential report's pieces: junction mapping, series scoring, and the written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from citygrid.settings import StreamSettings
from citygrid.sim.prequential import SeriesResult, evaluate_series, intersection_of, write_report


def test_loops_map_to_the_junction_their_lane_enters() -> None:
    assert intersection_of("e1_A0A1_0") == "A1"
    assert intersection_of("e1_B2C2_1") == "C2"


def test_a_daily_pattern_is_learned_better_than_persistence() -> None:
    t = np.arange(96 * 20)
    series = 2 + np.sin(2 * np.pi * t / 96) + 0.05 * np.random.default_rng(1).standard_normal(t.size)
    mae = evaluate_series(series, 900, 96, "river_linear")
    assert mae["steps"] == t.size - 1
    assert mae["model"] < mae["persistence"]


def test_the_report_is_written_as_markdown_and_json(tmp_path: Path) -> None:
    rows = [SeriesResult("energy", "prosumer", "meter", "m1", 10, 0.9, 1.0, 2.0)]
    md = write_report(rows, tmp_path, StreamSettings(), ["a note"])
    row = "| energy | prosumer | meter | m1 | 10 | 0.9000 | 1.0000 | 2.0000 | 0.900 | 0.450 |"
    assert row in md.read_text()
    data = json.loads((tmp_path / "prequential.json").read_text())
    assert data["summary"][0]["beats_persistence"] == 1 and data["meta"]["notes"] == ["a note"]
