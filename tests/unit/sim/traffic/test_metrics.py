"""RESCO's metrics from a tripinfo file: delay is timeLoss + departDelay over every vehicle of the
demand, vehicles still driving and never inserted included; the summary checks the issue's targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.sim.traffic.evaluation import device_name
from citygrid.sim.traffic.metrics import trip_stats
from citygrid.sim.traffic.report import summarise, write_report
from citygrid.sim.traffic.scenario import MORNING_PEAK_VEH_PER_H, Scenario

TRIPS = """<tripinfos>
  <tripinfo id="done" depart="10.00" departDelay="2.00" arrival="70.00" duration="60.00"
            waitingTime="5.00" timeLoss="12.00"/>
  <tripinfo id="driving" depart="50.00" departDelay="0.00" arrival="-1.00" duration="50.00"
            waitingTime="20.00" timeLoss="30.00" vaporized="end"/>
  <tripinfo id="never" depart="-1" departDelay="40.00" arrival="-1.00" duration="0.00"
            waitingTime="0.00" timeLoss="0.00" vaporized="end"/>
</tripinfos>"""


def test_delay_counts_every_vehicle_of_the_demand(tmp_path: Path) -> None:
    path = tmp_path / "trips.xml"
    path.write_text(TRIPS)
    s = trip_stats(path, 0, 100)
    assert s["vehicles"] == 3
    assert s["avg_delay_s"] == pytest.approx((12 + 2 + 30 + 0 + 0 + 40) / 3)
    assert s["mean_waiting_s"] == pytest.approx(25 / 3)
    # The wait to be inserted is part of the trip.
    assert s["mean_trip_s"] == pytest.approx((62 + 50 + 40) / 3)
    assert s["throughput_veh_h"] == pytest.approx(36.0)  # one arrival in 100 s


def run(case: str, mode: str, seed: int, delay: float) -> dict:
    return {"case": case, "mode": mode, "seed": seed, "avg_delay_s": delay, "mean_waiting_s": 1.0,
            "mean_trip_s": 2.0, "throughput_veh_h": 3.0}


def test_summary_checks_the_targets_per_case(tmp_path: Path) -> None:
    runs = [run("m", mode, seed, d) for seed in (1, 2) for mode, d in (
        ("fixed", 40.0), ("actuated", 30.0), ("actuated-rebuilt", 20.0), ("max-pressure", 18.0),
        ("citygrid", 16.0))]
    t = summarise(runs)["m"]["targets"]
    assert t["below_actuated"] == pytest.approx(0.2) and t["below_max_pressure"] == pytest.approx(1 / 9)
    assert t["worst_seed_vs_fixed"] == pytest.approx(0.4) and t["met"]
    runs[-1] = run("m", "citygrid", 2, 90.0)  # one seed gridlocked: worse than twice its fixed plan
    assert not summarise(runs)["m"]["targets"]["met"]
    write_report(runs, tmp_path / "traffic.md", ["note"])
    assert "| m | 40.0 | 30.0 | 20.0 | 18.0 | - | 53.0 |" in (tmp_path / "traffic.md").read_text()


def test_demand_levels_scale_the_morning_peak() -> None:
    assert Scenario.at("light").peak == MORNING_PEAK_VEH_PER_H
    assert Scenario.at("light").key() == Scenario().key()  # the edge's cached scenario stays the same
    assert Scenario.at("saturated").peak == tuple(2 * v for v in MORNING_PEAK_VEH_PER_H)
    with pytest.raises(ValueError, match="unknown demand level"):
        Scenario.at("rush")


def test_a_light_id_too_long_for_a_device_id_gets_a_stable_short_one() -> None:
    long_id = "cluster_" + "_".join(str(n) for n in range(40))
    assert len(device_name(long_id)) <= 64 and device_name(long_id) == device_name(long_id)
    assert device_name(long_id) != device_name(long_id + "_1")
    assert device_name("A0") == "A0"
