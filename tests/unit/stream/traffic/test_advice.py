"""Signal advice without SUMO or brokers: Webster's plan, the advisor's forecasts, the signed wire format."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.commands import CommandGuard, CommandIssuer, CommandRejected, CommandVerifier, SignalAdvice
from citygrid.errors import ConfigError
from citygrid.reading import Reading
from citygrid.settings import CitygridSettings, StreamSettings, TrafficSettings
from citygrid.signing import DeviceKey
from citygrid.stream.traffic.advice import Advisor, phase_lanes, webster
from citygrid.stream.traffic.advisor import TrafficAdvisor

B = TrafficSettings()
T0 = 1_767_225_600_000


def test_webster_gives_the_busier_phase_more_green_and_a_longer_cycle_under_more_demand() -> None:
    light_cycle, light = webster([0.05, 0.05], 6.0, B)
    heavy_cycle, heavy = webster([0.45, 0.15], 6.0, B)
    assert light == pytest.approx([light[0]] * 2)
    assert heavy[0] > heavy[1] >= B.min_green_s
    assert heavy_cycle > light_cycle
    # Webster: C0 = (1.5 L + 5) / (1 - Y) with L = 2 phases x 4 s lost, Y = 0.6 -> 42.5 s
    assert heavy_cycle == pytest.approx((1.5 * 8 + 5) / (1 - 0.6))
    assert sum(heavy) == pytest.approx(heavy_cycle - 6.0)


def test_webster_caps_a_saturated_intersection_at_the_maximum_cycle() -> None:
    cycle, greens = webster([0.6, 0.5], 6.0, B)
    assert cycle == B.max_cycle_s
    assert sum(greens) == pytest.approx(B.max_cycle_s - 6.0)


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


def _reading(seq: int, ns: float, ew: float) -> Reading:
    return Reading(device="dlight", seq=seq, ts_ms=T0 + seq * 60_000, kind="traffic",
                   values={"n.0.north_0": ns, "n.0.south_0": ns / 2, "n.1.east_0": ew,
                           "plan_intergreen_s": 6.0, "vehicles": 1.5 * ns + ew})


def test_advisor_learns_the_approaches_and_favours_the_busy_one() -> None:
    assert phase_lanes(_reading(0, 1, 1).values) == {"north_0": 0, "south_0": 0, "east_0": 1}
    advisor = Advisor(B, StreamSettings())
    advice = None
    for seq in range(30):
        advice = advisor.advise(_reading(seq, 12.0, 3.0))
    assert advice is not None and advice.device == "dlight"
    assert advice.greens_s[0] > advice.greens_s[1]
    assert advice.issued_ms == T0 + 30 * 60_000
    # A redelivered reading (same seq) is not learned twice and produces no advice.
    assert advisor.advise(_reading(29, 12.0, 3.0)) is None
