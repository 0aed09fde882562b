"""The delivery check against a real anchor store (no chain): which readings it reads, what it refuses,
and that a claim's bundles prove its readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ledger.chain import Inclusion
from citygrid.ledger.delivery_check import (
    DeliveryClaim,
    NotAnchored,
    check_interval,
    make_claims,
    verify_claim,
)
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.proofs import check_offline
from citygrid.market import Trade
from citygrid.merkle import MerkleTree
from citygrid.reading import Reading, sign_reading
from citygrid.settings import DeliverySettings
from citygrid.signing import DeviceKey

Q = 60_000  # one-minute intervals, readings every 15 s
T0 = 1_750_000_020_000 - 1_750_000_020_000 % Q
ANCHOR_MS = Q


def _anchor(store: AnchorStore, start: int, envelopes: list[tuple[str, int, bytes]],
            anchored: bool = True) -> None:
    leaves = sorted(envelopes)
    tree = MerkleTree([e for _, _, e in leaves])
    batch = store.add_batch(start, tree.root, f"remark {start}", leaves)
    if anchored:
        store.mark_anchored(batch.id, Inclusion("0x" + "ab" * 32, 7, 1))


def _series(key: DeviceKey, kind: str, kw: float, first: int, n: int, step: int = 15_000) -> list[Reading]:
    return [Reading(device=key.device_id, seq=i, ts_ms=first + i * step, kind=kind, values={"p_kw": kw})
            for i in range(n)]


@pytest.fixture
def world(tmp_path: Path):
    store = AnchorStore(tmp_path / "anchors.sqlite")
    honest, cheat, meter = DeviceKey.generate(), DeviceKey.generate(), DeviceKey.generate()
    keys = {k.device_id: k for k in (honest, cheat, meter)}
    # Three intervals of readings: the one before T0, T0's, the one after; the cheat's PV gives a third.
    readings = (_series(honest, "pv", 6.0, T0 - Q, 12) + _series(cheat, "pv", 2.0, T0 - Q, 12)
                + _series(meter, "meter", 12.0, T0 - Q, 12))
    for start in (T0 - Q, T0, T0 + Q):
        _anchor(store, start, [(r.device, r.seq, sign_reading(r, keys[r.device]).encode())
                               for r in readings if start <= r.ts_ms < start + ANCHOR_MS])
    owners = {"honest": [honest.device_id], "cheat": [cheat.device_id], "buyer": [meter.device_id]}
    trades = [Trade(trade_id=f"t{s}", interval_start_ms=T0, buyer="buyer", seller=s, bid_id=f"b{s}",
                    offer_id=f"o{s}", wh=100, price=5, grid_fee=1) for s in ("honest", "cheat")]
    return store, keys, owners, trades


def test_a_seller_short_of_what_it_sold_is_claimed_with_the_proofs_of_its_readings(world) -> None:
    store, keys, owners, trades = world
    results = {r.participant: r for r in check_interval(store, trades, owners, T0, Q, ANCHOR_MS,
                                                        DeliverySettings(max_hold_s=60))}
    # 6 kW for a minute is 100 Wh; 2 kW is a third of it; the buyer's 12 kW took its 200 Wh.
    assert results["honest"].verdict == "ok" and results["honest"].measured_wh == pytest.approx(100.0)
    assert results["cheat"].verdict == "delivery_shortfall"
    assert results["cheat"].shortfall_wh == pytest.approx(200 / 3)
    assert results["buyer"].verdict == "ok" and results["buyer"].measured_wh == pytest.approx(200.0)
    claims = make_claims(results.values(), store, T0, 60_000, lambda d: keys[d].public_key, None)
    assert [c.participant for c in claims] == ["cheat"]
    claim = DeliveryClaim.model_validate_json(claims[0].model_dump_json())
    assert (claim.alert.device, claim.alert.ts_ms, claim.alert.reason) == ("cheat", T0, "delivery_shortfall")
    assert (claim.alert.expected, claim.alert.value, claim.traded_wh) == (100.0, pytest.approx(33.333), 100)
    # The four readings inside the interval; the one at T0 - 15 s is held only up to T0.
    proven = [check_offline(b) for b in claim.proofs]
    assert [r.ts_ms for r in proven] == [T0, T0 + 15_000, T0 + 30_000, T0 + 45_000]
    assert all(r.device == keys[r.device].device_id and r.values["p_kw"] == 2.0 for r in proven)
    # Offline verification needs the block each root landed in: a claim made without a chain says so.
    with pytest.raises(ProofInvalid, match="no block evidence"):
        verify_claim(claim, "0x" + "00" * 32)


def test_a_seller_whose_readings_never_reached_the_chain_is_flagged_as_missing(world) -> None:
    store, keys, owners, trades = world
    owners = {**owners, "cheat": ["a-device-that-never-reported"]}
    results = {r.participant: r for r in check_interval(store, trades, owners, T0, Q, ANCHOR_MS,
                                                        DeliverySettings(max_hold_s=60))}
    assert results["cheat"].verdict == "missing_readings" and results["cheat"].measured_wh == 0
    claims = make_claims(results.values(), store, T0, 60_000, lambda d: keys[d].public_key, None)
    assert [(c.participant, c.alert.reason, c.proofs) for c in claims] == [("cheat", "missing_readings", [])]


def test_readings_still_waiting_for_the_chain_are_not_read_as_missing(world, tmp_path: Path) -> None:
    store, keys, owners, trades = world
    late = Reading(device=next(iter(keys)), seq=99, ts_ms=T0 + 59_000, kind="pv", values={"p_kw": 1.0})
    _anchor(store, T0, [(late.device, 99, sign_reading(late, keys[late.device]).encode())], anchored=False)
    with pytest.raises(NotAnchored, match="still waiting for the chain"):
        check_interval(store, trades, owners, T0, Q, ANCHOR_MS, DeliverySettings())


def test_only_anchored_readings_of_the_asked_devices_and_window_are_read(world) -> None:
    store, keys, _, _ = world
    honest = next(iter(keys))
    leaves = store.anchored_leaves([honest], T0, T0 + Q)
    assert [(d, s) for d, s, _ in leaves] == [(honest, i) for i in range(4, 8)]
    assert store.anchored_leaves(["nobody"], T0 - Q, T0 + 2 * Q) == []
