"""Did each participant do what its trades say? Energy from readings, compared with the trades.

Pure logic, no I/O (`delivery_check` reads the anchor store and cuts the proofs).

Energy: a reading's power holds from its timestamp until the device's next reading, at most
`max_hold_ms` (zero-order hold forward). That is what a SimBench profile value means (the mean power of
the quarter-hour that starts at its timestamp) and what any meter reading at any cadence gives when
nothing better is known. The reading just before the interval covers its start, and the last one in
the interval is cut at its end, so an interval is measured exactly by the readings that fall into it
plus the one before. Time no reading covers (a device silent for longer than `max_hold_ms`, or with no
reading before the interval) counts as zero power: only what anchored readings show is credited.

Sides: PV (generation) exports, meters (consumption) import; a participant's measured net export is
the sum of its generation minus the sum of its consumption, because energy a seller uses at home never
reached its buyer. Its traded net export is what it sold minus what it bought. A seller falls short when
it exported less than it sold; a buyer when it imported less than it bought (energy bought and never
taken). Doing more than traded is an ordinary imbalance the grid absorbs, and is not flagged.

A gap in a device's coverage is harmless when its unknown energy could only add to what the participant
did (a seller's PV, a buyer's meter: the shortfall is then proven even without it), and is itself
flagged when it could hide a shortfall (a seller's household meter silenced to hide what it used).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from citygrid.market import Trade
from citygrid.reading import Reading

# Reading kinds by the direction their power flows; a participant's other devices (traffic sensors…)
# carry no energy and are left out.
GENERATION_KINDS = frozenset({"pv"})
CONSUMPTION_KINDS = frozenset({"meter"})
POWER_VALUE = "p_kw"
MS_PER_HOUR = 3_600_000

Verdict = Literal["ok", "delivery_shortfall", "missing_readings", "no_trade"]


@dataclass(frozen=True)
class Sample:
    """One reading's power: what the integration needs of it."""

    device: str
    seq: int
    ts_ms: int
    kind: str
    kw: float

    @classmethod
    def of(cls, reading: Reading) -> Sample | None:
        """The sample of an energy reading, None for a reading that carries no power."""
        if reading.kind not in GENERATION_KINDS | CONSUMPTION_KINDS or POWER_VALUE not in reading.values:
            return None
        return cls(reading.device, reading.seq, reading.ts_ms, reading.kind, reading.values[POWER_VALUE])


@dataclass(frozen=True)
class DeviceEnergy:
    """One device's energy over an interval and the readings it rests on."""

    device: str
    kind: str | None  # None: no reading of it at all
    wh: float
    covered_ms: int
    used: tuple[Sample, ...]

    @property
    def export_wh(self) -> float:
        """Signed toward the grid: generation positive, consumption negative."""
        return self.wh if self.kind in GENERATION_KINDS else -self.wh


def integrate(device: str, samples: Iterable[Sample], start_ms: int, end_ms: int,
              max_hold_ms: int) -> DeviceEnergy:
    """A device's energy (Wh) over [start_ms, end_ms): each reading's power held until the next, at most
    `max_hold_ms`; the readings that contributed are kept as the evidence."""
    ordered = sorted(samples, key=lambda x: (x.ts_ms, x.seq))
    wh, covered, used = 0.0, 0, []
    for i, sample in enumerate(ordered):
        hold_end = sample.ts_ms + max_hold_ms
        if i + 1 < len(ordered):
            hold_end = min(hold_end, ordered[i + 1].ts_ms)
        span = min(hold_end, end_ms) - max(sample.ts_ms, start_ms)
        if span > 0:
            wh += sample.kw * span / MS_PER_HOUR * 1000
            covered += span
            used.append(sample)
    kind = ordered[-1].kind if ordered else None
    return DeviceEnergy(device, kind, wh, covered, tuple(used))


@dataclass(frozen=True)
class Tolerance:
    """How big a shortfall must be to count."""

    pct: float
    wh: float

    def of(self, traded_wh: float) -> float:
        """The allowed shortfall for this much traded energy."""
        return self.wh + self.pct / 100 * abs(traded_wh)


@dataclass(frozen=True)
class ParticipantDelivery:
    """One participant's trades of an interval against its measured energy."""

    participant: str
    sold_wh: int
    bought_wh: int
    devices: tuple[DeviceEnergy, ...]
    interval_ms: int
    tolerance_wh: float
    verdict: Verdict
    hiding_gaps: tuple[str, ...]  # devices whose uncovered time could hide a shortfall

    @property
    def side(self) -> Literal["seller", "buyer", "none"]:
        """Which obligation its trades leave it with, net."""
        net = self.sold_wh - self.bought_wh
        return "seller" if net > 0 else "buyer" if net < 0 else "none"

    @property
    def traded_wh(self) -> int:
        """What it owed: net export for a seller, net import for a buyer."""
        return abs(self.sold_wh - self.bought_wh)

    @property
    def measured_wh(self) -> float:
        """What readings show it did, in the same direction as `traded_wh`."""
        export = sum(d.export_wh for d in self.devices)
        return -export if self.side == "buyer" else export

    @property
    def shortfall_wh(self) -> float:
        """Traded minus measured (negative: it did more than traded)."""
        return self.traded_wh - self.measured_wh

    @property
    def flagged(self) -> bool:
        """True when the interval's delivery is not proven by the readings."""
        return self.verdict in ("delivery_shortfall", "missing_readings")

    @property
    def evidence(self) -> tuple[Sample, ...]:
        """Every reading the measured energy rests on."""
        return tuple(s for d in self.devices for s in d.used)


def positions(trades: Iterable[Trade], interval_start_ms: int) -> dict[str, tuple[int, int]]:
    """Participant → (Wh sold, Wh bought) in one interval."""
    sold: dict[str, int] = defaultdict(int)
    bought: dict[str, int] = defaultdict(int)
    for t in trades:
        if t.interval_start_ms == interval_start_ms:
            sold[t.seller] += t.wh
            bought[t.buyer] += t.wh
    return {p: (sold[p], bought[p]) for p in sorted(set(sold) | set(bought))}


def judge(participant: str, sold_wh: int, bought_wh: int, devices: Sequence[DeviceEnergy],
          interval_ms: int, tolerance: Tolerance) -> ParticipantDelivery:
    """Compare one participant's trades with its devices' energy."""
    net = sold_wh - bought_wh
    # A gap hides a shortfall when its unknown energy would count against the obligation.
    against = CONSUMPTION_KINDS if net > 0 else GENERATION_KINDS
    hiding = tuple(d.device for d in devices
                   if d.covered_ms < interval_ms and (d.kind is None or d.kind in against))
    result = ParticipantDelivery(participant, sold_wh, bought_wh, tuple(devices), interval_ms,
                                 tolerance.of(net), "ok", hiding)
    if net == 0:
        verdict: Verdict = "no_trade"
    elif not devices or hiding or not any(d.used for d in devices):
        verdict = "missing_readings"
    elif result.shortfall_wh > result.tolerance_wh:
        verdict = "delivery_shortfall"
    else:
        verdict = "ok"
    return replace(result, verdict=verdict)


def compare(trades: Iterable[Trade], owners: Mapping[str, Sequence[str]],
            samples: Mapping[str, Sequence[Sample]], start_ms: int, interval_ms: int, max_hold_ms: int,
            tolerance: Tolerance) -> list[ParticipantDelivery]:
    """Every participant that traded in the interval, judged on its devices' samples."""
    out = []
    for participant, (sold, bought) in positions(trades, start_ms).items():
        devices = [integrate(d, samples.get(d, ()), start_ms, start_ms + interval_ms, max_hold_ms)
                   for d in owners.get(participant, ())]
        out.append(judge(participant, sold, bought, devices, interval_ms, tolerance))
    return out
