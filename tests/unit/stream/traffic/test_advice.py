"""Signal advice without SUMO or brokers: green ceilings from forecast demand, the advisor's forecasts,
the signed wire format."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.commands import CommandGuard, CommandIssuer, CommandRejected, CommandVerifier, SignalAdvice
from citygrid.errors import ConfigError
from citygrid.reading import Reading
from citygrid.settings import CitygridSettings, StreamSettings, TrafficSettings
from citygrid.signing import DeviceKey
from citygrid.stream.traffic.advice import HEADROOM, Advisor, ceilings
from citygrid.stream.traffic.advisor import TrafficAdvisor

B = TrafficSettings()
T0 = 1_767_225_600_000


def test_ceilings_bite_only_where_forecast_demand_exceeds_the_cycle() -> None:
    headway = 3600.0 / B.saturation_veh_h
    budget, greens = ceilings([30.0, 10.0], 6.0, B)
    assert budget == B.max_cycle_s - 6.0
    # 30 and 10 vehicles clear within one cycle: no cap, the light's gap-out decides alone.
    assert greens == [B.max_green_s] * 2
    budget, greens = ceilings([90.0, 10.0], 6.0, B)
    assert greens[0] == B.max_green_s  # 2 x 9/10 of the budget: capped at the device's max green
    # The quiet green is capped, though never below what its own forecast demand needs to clear.
    assert greens[1] == pytest.approx(max(HEADROOM * budget / 10, B.min_green_s + headway * 10))
    assert greens[1] < B.max_green_s
    assert ceilings([0.0, 0.0], 6.0, B)[1] == [B.max_green_s] * 2  # no demand seen: no cap
    assert ceilings([200.0, 0.0], 6.0, B)[1][1] == B.min_green_s  # never below the minimum green


def test_advice_travels_signed_and_garbage_is_refused(tmp_path: Path) -> None:
    authority = DeviceKey.generate()
    advice = SignalAdvice("dabc", (12.5, 20.0), 38.5, T0)
    light = CommandVerifier(authority.public_key, "dabc", CommandGuard(tmp_path / "n.json"), 16 * 1024)
    cmd, _ = light.open(CommandIssuer(authority).advice(advice, ttl_s=60), "signal_advice")
    assert cmd.advice() == advice
    unsigned = b'{"device": "dabc", "greens_s": [60, 5], "cycle_s": 71, "issued_ms": 1}'
    for bad in (b"not json", unsigned, b"[" * 100_000):
        with pytest.raises(CommandRejected):
            light.open(bad, "signal_advice")


def test_the_advisor_refuses_to_start_without_the_command_key(settings: CitygridSettings) -> None:
    with pytest.raises(ConfigError, match="CITYGRID_TRAFFIC__COMMAND_KEY_FILE"):
        TrafficAdvisor(settings)


def _reading(seq: int, main: float, side: float, phases: int = 2) -> Reading:
    return Reading(device="dlight", seq=seq, ts_ms=T0 + seq * 60_000, kind="traffic",
                   values={"d.0": main, "d.1": side, "plan_phases": float(phases), "plan_intergreen_s": 6.0,
                           "vehicles": main + side})


def test_advisor_learns_each_greens_demand_and_caps_the_quiet_one() -> None:
    advisor = Advisor(B, StreamSettings())
    advice = None
    for seq in range(30):
        advice = advisor.advise(_reading(seq, 80.0, 5.0))
    assert advice is not None and advice.device == "dlight"
    assert len(advice.greens_s) == 2 and advice.greens_s[0] > advice.greens_s[1]
    assert advice.issued_ms == T0 + 30 * 60_000
    # A redelivered reading (same seq) is not learned twice and produces no advice.
    assert advisor.advise(_reading(29, 80.0, 5.0)) is None
    # The light says how many greens it has, even when the last one saw no demand.
    assert len(advisor.advise(_reading(30, 5.0, 0.0)).greens_s) == 2
    # A light with nothing to switch gets no advice.
    assert Advisor(B, StreamSettings()).advise(_reading(0, 5.0, 0.0, phases=1)) is None
