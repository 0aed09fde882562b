"""The delivery check on real data: anchored readings in, flagged participants out with their proofs.

Only anchored readings count (a reading not yet on chain cannot be proven), so run the check once the
anchorer has closed the interval; batches of the interval still waiting for the chain are refused as
`not_anchored` rather than read as missing readings. Each flagged participant becomes a
`DeliveryClaim`: the alert, the numbers, and the proof bundle of every reading the measured energy
rests on, each carrying its block so `verify_claim` (or `citygrid ledger verify --offline` per bundle)
checks it with no network. `verify_claim` also recomputes the energy from the proven readings alone,
so the claim's numbers are checked, not trusted.

What a claim cannot prove is absence: inclusion proofs show which readings exist, not that no other
does. A participant who disputes a claim answers it with the proof of a reading the claim left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from citygrid import kafka_clients
from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ledger.block_evidence import BlockEvidence, fetch_evidence
from citygrid.ledger.chain import ChainClient
from citygrid.ledger.delivery import (
    ParticipantDelivery,
    Sample,
    Tolerance,
    compare,
    integrate,
    judge,
)
from citygrid.ledger.errors import LedgerError, ProofInvalid
from citygrid.ledger.proofs import ProofBundle, build_bundle, verify_offline
from citygrid.ledger.remarks import anchor_remark
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Trade
from citygrid.merkle import MerkleTree
from citygrid.participants import Participants
from citygrid.reading import reading_or_none
from citygrid.records import Alert
from citygrid.settings import CitygridSettings, DeliverySettings, KafkaSettings
from citygrid.signing import DeviceRegistry

# Recomputed energy may differ from the claimed one by float summation order only.
WH_EPSILON = 1e-6


class NotAnchored(LedgerError, reason="not_anchored"):
    """Readings of the interval are batched but their root is not on chain yet."""


class DeliveryInputError(LedgerError, reason="config"):
    """The interval or the trades to check cannot be read."""


class AlertsNotPublished(LedgerError, reason="kafka"):
    """The alerts topic did not take the claims' alerts."""


class DeliveryClaim(BaseModel):
    """A flagged participant's interval: the alert, the numbers, and the proofs they rest on."""

    version: int = 1
    alert: Alert
    participant: str
    side: Literal["seller", "buyer"]
    interval_start_ms: int
    interval_ms: int
    max_hold_ms: int
    sold_wh: int
    bought_wh: int
    traded_wh: int
    measured_wh: float
    tolerance_wh: float
    shortfall_wh: float
    devices: list[str]
    uncovered_ms: dict[str, int]
    # Each reading's bundle, and once per anchor the block it landed in ("<block hash>/<extrinsic>"):
    # readings of one interval share a few anchors, so the blocks are not repeated per reading.
    proofs: list[ProofBundle]
    blocks: dict[str, BlockEvidence] = {}

    def bundles(self) -> list[ProofBundle]:
        """The proofs as self-contained bundles (block attached), as `citygrid ledger verify` reads."""
        return [b.model_copy(update={"block": self.blocks.get(_anchor_of(b), b.block)}) for b in self.proofs]


def _anchor_of(bundle: ProofBundle) -> str:
    return f"{bundle.block_hash}/{bundle.extrinsic_index}"


def load_samples(store: AnchorStore, devices: Sequence[str], start_ms: int, end_ms: int,
                 max_hold_ms: int, anchor_interval_ms: int) -> dict[str, list[Sample]]:
    """The anchored power samples of `devices` that can cover [start_ms, end_ms): those inside it and
    those up to `max_hold_ms` before it (found through batches, which leaves are indexed by)."""
    first_batch = start_ms - max_hold_ms - anchor_interval_ms
    if store.pending_between(first_batch, end_ms):
        raise NotAnchored(f"readings of interval {start_ms} are still waiting for the chain; run the "
                          "delivery check again once `citygrid ledger status` shows them anchored")
    out: dict[str, list[Sample]] = defaultdict(list)
    for device, _, envelope in store.anchored_leaves(list(devices), first_batch, end_ms):
        reading = reading_or_none(envelope)
        sample = None if reading is None else Sample.of(reading)
        if sample is not None and start_ms - max_hold_ms <= sample.ts_ms < end_ms:
            out[device].append(sample)
    return dict(out)


def check_interval(store: AnchorStore, trades: Iterable[Trade], owners: Mapping[str, Sequence[str]],
                   start_ms: int, interval_ms: int, anchor_interval_ms: int,
                   settings: DeliverySettings) -> list[ParticipantDelivery]:
    """Every participant that traded in the interval, judged on its anchored readings."""
    trades = [t for t in trades if t.interval_start_ms == start_ms]
    traders = {p for t in trades for p in (t.seller, t.buyer)}
    devices = sorted({d for p in traders for d in owners.get(p, ())})
    hold = settings.max_hold_s * 1000
    samples = load_samples(store, devices, start_ms, start_ms + interval_ms, hold, anchor_interval_ms)
    return compare(trades, owners, samples, start_ms, interval_ms, hold,
                   Tolerance(settings.tolerance_pct, settings.tolerance_wh))


def alert_of(result: ParticipantDelivery, start_ms: int) -> Alert:
    """The alert record of a flagged participant: `device` names the participant (the whole set of its
    devices is at fault; an alert's device field holds 64 characters, enrolled names fit), `value` is the
    measured Wh, `expected` the traded Wh, `score` the shortfall."""
    return Alert(device=result.participant[:64], kind="delivery", seq=0, ts_ms=start_ms,
                 value=round(result.measured_wh, 3), expected=float(result.traded_wh),
                 score=round(result.shortfall_wh, 3), reason=result.verdict)


def make_claims(results: Iterable[ParticipantDelivery], store: AnchorStore, start_ms: int,
                max_hold_ms: int, public_key: Callable[[str], bytes],
                chain: ChainClient | None) -> list[DeliveryClaim]:
    """A claim per flagged participant, with the block of each anchor its bundles rest on (fetched once
    per anchor) when a chain is given; `public_key` gives a device's key (DeviceRegistry.public_key)."""
    evidence: dict[str, BlockEvidence] = {}
    trees: dict[int, MerkleTree] = {}
    claims = []
    for r in results:
        if not r.flagged or r.side == "none":
            continue
        proofs = [_bundle(store, s, public_key(s.device), chain, evidence, trees) for s in r.evidence]
        claims.append(DeliveryClaim(
            alert=alert_of(r, start_ms), participant=r.participant, side=r.side, interval_start_ms=start_ms,
            interval_ms=r.interval_ms, max_hold_ms=max_hold_ms, sold_wh=r.sold_wh, bought_wh=r.bought_wh,
            traded_wh=r.traded_wh, measured_wh=r.measured_wh, tolerance_wh=r.tolerance_wh,
            shortfall_wh=r.shortfall_wh, devices=[d.device for d in r.devices],
            uncovered_ms={d.device: r.interval_ms - d.covered_ms for d in r.devices
                          if d.covered_ms < r.interval_ms},
            proofs=proofs, blocks={a: evidence[a] for a in sorted({_anchor_of(b) for b in proofs})
                                   if a in evidence}))
    return claims


def _bundle(store: AnchorStore, sample: Sample, key: bytes, chain: ChainClient | None,
            cache: dict[str, BlockEvidence], trees: dict[int, MerkleTree]) -> ProofBundle:
    bundle = build_bundle(store, sample.device, sample.seq, key, trees=trees)
    where = _anchor_of(bundle)
    if chain is not None and where not in cache:
        remark = anchor_remark(bundle.interval_start_ms, bundle.leaf_count, bytes.fromhex(bundle.root))
        cache[where] = fetch_evidence(chain, bundle.block_hash, bundle.block_number, bundle.extrinsic_index,
                                      remark)
    return bundle


def verify_claim(claim: DeliveryClaim, anchor_public_key: str, genesis_hash: str | None = None) -> float:
    """Check a claim with no network: every bundle offline, then the energy recomputed from the proven
    readings alone must equal the claim's and still fall short; the recomputed measured Wh."""
    samples: dict[str, list[Sample]] = defaultdict(list)
    seen = set()
    for bundle in claim.bundles():
        reading, _ = verify_offline(bundle, anchor_public_key, genesis_hash)
        sample = Sample.of(reading)
        if sample is None or reading.device not in claim.devices or (reading.device, reading.seq) in seen:
            raise ProofInvalid(f"reading {reading.device}/{reading.seq} is not power of one of "
                               f"{claim.participant}'s devices, or is given twice")
        seen.add((reading.device, reading.seq))
        samples[reading.device].append(sample)
    end = claim.interval_start_ms + claim.interval_ms
    devices = [integrate(d, samples.get(d, ()), claim.interval_start_ms, end, claim.max_hold_ms)
               for d in claim.devices]
    again = judge(claim.participant, claim.sold_wh, claim.bought_wh, devices, claim.interval_ms,
                  Tolerance(0.0, claim.tolerance_wh))
    if not math.isclose(again.measured_wh, claim.measured_wh, abs_tol=WH_EPSILON):
        raise ProofInvalid(f"the proven readings show {again.measured_wh:.3f} Wh, not the claimed "
                           f"{claim.measured_wh:.3f} Wh")
    if again.verdict != claim.alert.reason:
        raise ProofInvalid(f"the proven readings give the verdict {again.verdict}, not {claim.alert.reason}")
    return again.measured_wh


class ParticipantRow(BaseModel):
    """One trader's line of the report."""

    participant: str
    side: Literal["seller", "buyer", "none"]
    sold_wh: int
    bought_wh: int
    traded_wh: int
    measured_wh: float
    shortfall_wh: float
    tolerance_wh: float
    verdict: str
    uncovered_ms: dict[str, int]

    @classmethod
    def of(cls, r: ParticipantDelivery) -> ParticipantRow:
        """The row of one judged participant."""
        return cls(participant=r.participant, side=r.side, sold_wh=r.sold_wh, bought_wh=r.bought_wh,
                   traded_wh=r.traded_wh, measured_wh=r.measured_wh, shortfall_wh=r.shortfall_wh,
                   tolerance_wh=r.tolerance_wh, verdict=r.verdict,
                   uncovered_ms={d.device: r.interval_ms - d.covered_ms for d in r.devices
                                 if d.covered_ms < r.interval_ms})


class DeliveryReport(BaseModel):
    """What `citygrid ledger delivery` writes: every trader's verdict and a claim per flagged one."""

    interval_start_ms: int
    interval_ms: int
    trades: int
    participants: list[ParticipantRow]
    claims: list[DeliveryClaim]

    @property
    def flagged(self) -> bool:
        """True when some participant's delivery is not proven."""
        return bool(self.claims)


def run_delivery_check(s: CitygridSettings, start_ms: int, trades_file: Path | None,
                       with_blocks: bool = True) -> DeliveryReport:
    """The delivery check of one interval with this process's stores and registries: trades from
    `trades_file` (JSON list) or the settlement store, owners from the participants registry."""
    interval_ms = s.market.interval_s * 1000
    if start_ms % interval_ms:
        raise DeliveryInputError(f"{start_ms} is not the start of a {s.market.interval_s} s market interval")
    registry = Participants.load(s.paths.participants)
    trades = [_by_name(t, registry) for t in _trades(s, start_ms, trades_file)]
    owners = {name: list(registry.get(name).devices) for name in registry}
    store = AnchorStore(s.paths.anchor_store)
    chain = ChainClient(s.chain.url) if with_blocks else None
    try:
        results = check_interval(store, trades, owners, start_ms, interval_ms, s.anchor.interval_s * 1000,
                                 s.delivery)
        keys = DeviceRegistry.load(s.paths.device_registry).public_key
        claims = make_claims(results, store, start_ms, s.delivery.max_hold_s * 1000, keys, chain)
    finally:
        store.close()
        if chain is not None:
            chain.close()
    return DeliveryReport(interval_start_ms=start_ms, interval_ms=interval_ms, trades=len(trades),
                          participants=[ParticipantRow.of(r) for r in results], claims=claims)


def _trades(s: CitygridSettings, start_ms: int, trades_file: Path | None) -> list[Trade]:
    if trades_file is not None:
        try:
            trades = TypeAdapter(list[Trade]).validate_json(Path(trades_file).read_text())
        except (OSError, ValidationError) as exc:
            raise DeliveryInputError(f"cannot read trades from {trades_file}: {str(exc)[:300]}") from exc
        return [t for t in trades if t.interval_start_ms == start_ms]
    record = SettlementStore(s.paths.settlement_store).get(start_ms)
    if record is None:
        raise DeliveryInputError(f"no trades of interval {start_ms} in the settlement store "
                                 f"{s.paths.settlement_store}; pass them with --trades FILE")
    return list(record.trades)


def _by_name(trade: Trade, registry: Participants) -> Trade:
    # A trade may name a party by its address; its devices are listed under its name.
    names = {side: registry.name_of(getattr(trade, side)) for side in ("seller", "buyer")
             if getattr(trade, side) in registry}
    return trade.model_copy(update=names) if names else trade


def publish_alerts(k: KafkaSettings, claims: Iterable[DeliveryClaim]) -> int:
    """Publish each claim's alert to the alerts topic (keyed by participant); how many were sent."""
    from kafka.errors import KafkaError

    try:
        producer = kafka_clients.producer(k, acks="all")
        try:
            sent = [producer.send(k.alerts_topic, key=c.participant.encode(), value=c.alert.encode())
                    for c in claims]
            producer.flush(30)
            for future in sent:
                future.get(timeout=30)
        finally:
            producer.close(5)
    except KafkaError as exc:
        raise AlertsNotPublished(f"the alerts could not be published to {k.alerts_topic} at {k.bootstrap}: "
                                 f"{exc!r}; the report file holds them, publish again later") from exc
    return len(sent)

