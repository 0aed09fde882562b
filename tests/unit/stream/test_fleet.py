"""The fleet view derived from readings."""

from __future__ import annotations

from prometheus_client import REGISTRY

from citygrid.reading import ModelOutput, Reading
from citygrid.stream.fleet import FleetView

TS = 1_790_000_000_000


def reading(device: str, version: str | None = None) -> Reading:
    model = ModelOutput(name="nowcast", version=version, outputs={"y": 1.0}) if version else None
    return Reading(device=device, seq=0, ts_ms=TS, kind="meter", values={"p_kw": 1.0}, model=model)


def test_devices_drop_out_of_the_online_count_after_the_window() -> None:
    fleet = FleetView(online_window_s=60)
    fleet.observe(reading("dfleeta"), now=1000)
    fleet.observe(reading("dfleetb"), now=1030)
    assert fleet.online(now=1050) == 2
    assert fleet.online(now=1075) == 1
    assert fleet.online(now=1200) == 0


def test_model_version_gauge_follows_the_latest_reading() -> None:
    fleet = FleetView()
    fleet.observe(reading("dfleetc", "1"), now=1)
    assert REGISTRY.get_sample_value("citygrid_fleet_model_info",
                                     {"device": "dfleetc", "model": "nowcast", "version": "1"}) == 1
    fleet.observe(reading("dfleetc", "2"), now=2)
    assert REGISTRY.get_sample_value("citygrid_fleet_model_info",
                                     {"device": "dfleetc", "model": "nowcast", "version": "1"}) is None
    assert REGISTRY.get_sample_value("citygrid_fleet_model_info",
                                     {"device": "dfleetc", "model": "nowcast", "version": "2"}) == 1
