"""The delivery check end to end: signed readings through the real Kafka, anchored on the dev chain by a
real anchorer, then one interval's trades checked against them.

Three sellers and a buyer trade in one one-minute interval. The honest seller's PV delivers what it sold;
the cheat sold 100 Wh but its PV gave 2 kW while its house used 0.5 kW (25 Wh delivered); the ghost's PV
never reported. The cheat and the ghost are flagged with the proofs of the readings the claim rests on,
which verify with no network and reproduce the claimed energy; the honest seller and the buyer are not.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from substrateinterface import Keypair
from support import free_port, isolated_settings, publish_signed, running_anchorer, wait_until

from citygrid.ledger.delivery_check import DeliveryClaim, DeliveryReport, run_delivery_check, verify_claim
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.settlement_store import SettlementStore
from citygrid.market import Trade
from citygrid.participants import Participant, Participants
from citygrid.reading import Reading
from citygrid.records import Alert
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry

pytestmark = pytest.mark.timeout(240)

INTERVAL_S = 60
STEP_MS = 10_000
# participant → [(device kind, kW)]; the ghost's PV is enrolled but never reports.
FLEET = {"honest": [("pv", 6.0)], "cheat": [("pv", 2.0), ("meter", 0.5)], "buyer": [("meter", 15.0)],
         "ghost": [("pv", 3.0)]}
SOLD = {"honest": 100, "cheat": 100, "ghost": 50}  # Wh, each to the buyer


def _enrol(s: CitygridSettings) -> dict[str, list[DeviceKey]]:
    """Device keys per participant, in the device registry and the participants registry."""
    keys = {p: [DeviceKey.generate() for _ in devices] for p, devices in FLEET.items()}
    registry = DeviceRegistry()
    for k in (k for ks in keys.values() for k in ks):
        registry.add(k.public_key)
    registry.save(s.paths.device_registry)
    def address() -> str:
        return Keypair.create_from_mnemonic(Keypair.generate_mnemonic()).ss58_address

    Participants({p: Participant(address=address(), order_key=secrets.token_hex(32),
                                 devices=tuple(k.device_id for k in ks))
                  for p, ks in keys.items()}).save(s.paths.participants)
    return keys


def _readings(keys: dict[str, list[DeviceKey]], start: int) -> list[tuple[Reading, DeviceKey]]:
    """Every 10 s from a minute before the interval to a minute after it, except the ghost's."""
    out = []
    for p, devices in FLEET.items():
        if p == "ghost":
            continue
        for (kind, kw), key in zip(devices, keys[p], strict=True):
            out += [(Reading(device=key.device_id, seq=i, ts_ms=start - 60_000 + i * STEP_MS, kind=kind,
                             values={"p_kw": kw}), key) for i in range(18)]
    return out


@pytest.fixture(scope="module")
def anchored(servers: CitygridSettings, tmp_path_factory: pytest.TempPathFactory):
    """The fleet's readings anchored by a real anchorer; the interval's trades in a file and in the
    settlement store."""
    from citygrid.stream.kafka_topics import ensure_topics

    base = isolated_settings(tmp_path_factory.mktemp("delivery"))
    s = base.model_copy(update={
        "anchor": base.anchor.model_copy(update={"interval_s": INTERVAL_S, "idle_flush_s": 0.5}),
        "market": base.market.model_copy(update={"interval_s": INTERVAL_S})})
    ensure_topics(s.kafka, [s.kafka.readings_topic, s.kafka.alerts_topic])
    keys = _enrol(s)
    start = (int(time.time() * 1000) // (INTERVAL_S * 1000) - 4) * INTERVAL_S * 1000
    readings = _readings(keys, start)
    publish_signed(s, readings)
    with running_anchorer(s) as anchorer:
        wait_until(what="anchoring", check=lambda: anchorer.store.counts()[2] == len(readings)
                   and not anchorer.store.batches(pending_only=True))
    trades = [Trade(trade_id=f"t-{p}", interval_start_ms=start, buyer="buyer", seller=p, bid_id=f"b-{p}",
                    offer_id=f"o-{p}", wh=wh, price=50, grid_fee=5) for p, wh in SOLD.items()]
    trades_file = s.paths.data_dir / "trades.json"
    trades_file.write_text(json.dumps([t.model_dump() for t in trades]))
    # What the delivery check reads: the interval's settled trades (the remark is not its concern).
    SettlementStore(s.paths.settlement_store).prepare(start, trades, f"citygrid:settle:v2:{start}:test")
    yield s, anchorer, start, trades_file
    anchorer.chain.close()


def test_a_seller_that_did_not_deliver_is_flagged_with_proofs_that_verify_offline(anchored) -> None:
    s, anchorer, start, trades_file = anchored
    key = "0x" + anchorer.keypair.public_key.hex()
    report = run_delivery_check(s, start, trades_file)
    rows = {p.participant: p for p in report.participants}
    assert {p: r.verdict for p, r in rows.items()} == {
        "honest": "ok", "buyer": "ok", "cheat": "delivery_shortfall", "ghost": "missing_readings"}
    assert rows["honest"].measured_wh == pytest.approx(100.0)  # 6 kW for a minute
    assert rows["buyer"].measured_wh == pytest.approx(250.0)  # 15 kW for a minute: all it bought
    claims = {c.participant: DeliveryClaim.model_validate_json(c.model_dump_json()) for c in report.claims}
    assert set(claims) == {"cheat", "ghost"}
    cheat = claims["cheat"]
    assert (cheat.traded_wh, cheat.measured_wh, cheat.shortfall_wh) == (100, pytest.approx(25.0),
                                                                        pytest.approx(75.0))
    assert cheat.alert == Alert(device="cheat", kind="delivery", seq=0, ts_ms=start, value=25.0,
                                expected=100.0, score=75.0, reason="delivery_shortfall")
    # Six readings of its PV and six of its house meter inside the minute prove the 25 Wh.
    # Their blocks come once per anchor (here one), not once per reading.
    assert len(cheat.proofs) == 12 and len(cheat.blocks) == 1
    assert all(b.block is not None for b in cheat.bundles())
    genesis = next(iter(cheat.blocks.values())).genesis_hash
    assert verify_claim(cheat, key, genesis) == pytest.approx(25.0)
    ghost = claims["ghost"]
    assert (ghost.alert.reason, ghost.measured_wh, ghost.proofs) == ("missing_readings", 0.0, [])
    assert verify_claim(ghost, key, genesis) == 0.0


def test_a_doctored_claim_does_not_verify(anchored) -> None:
    s, anchorer, start, trades_file = anchored
    key = "0x" + anchorer.keypair.public_key.hex()
    cheat = next(c for c in run_delivery_check(s, start, trades_file).claims if c.participant == "cheat")
    # Dropping the house meter's proofs would claim 33 Wh; the recomputation then finds the meter's gap.
    pv_only = cheat.model_copy(update={"proofs": [b for b in cheat.proofs
                                                  if b.signed().reading().kind == "pv"]})
    with pytest.raises(ProofInvalid, match=r"not the claimed|verdict"):
        verify_claim(pv_only, key)
    inflated = cheat.model_copy(update={"measured_wh": 10.0})
    with pytest.raises(ProofInvalid, match="not the claimed"):
        verify_claim(inflated, key)
    honest = cheat.model_copy(update={"sold_wh": 25, "traded_wh": 25})
    with pytest.raises(ProofInvalid, match="verdict ok"):
        verify_claim(honest, key)
    with pytest.raises(ProofInvalid, match="not the anchorer"):
        verify_claim(cheat, "0x" + "22" * 32)


def test_the_cli_flags_the_interval_publishes_the_alerts_and_its_proofs_verify_with_no_servers(
        anchored, tmp_path: Path, child_env) -> None:
    from citygrid.stream.kafka_topics import read_topic

    s, anchorer, start, _ = anchored
    key = "0x" + anchorer.keypair.public_key.hex()
    out = tmp_path / "delivery.json"
    # No --trades: the interval's trades come from the settlement store.
    run = subprocess.run([sys.executable, "-m", "citygrid", "ledger", "delivery", str(start), "-o", str(out),
                          "--publish"], env=child_env(s), cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    flat = " ".join(run.stdout.split())
    assert "delivery_shortfall" in flat and "missing_readings (gap 60 s)" in flat, run.stdout
    assert "2 flagged, 12 proofs" in flat
    report = DeliveryReport.model_validate_json(out.read_text())
    assert [c.participant for c in report.claims] == ["cheat", "ghost"]
    alerts = [Alert.decode(r.value) for r in read_topic(s.kafka, s.kafka.alerts_topic)]
    assert sorted((a.device, a.reason) for a in alerts if a.ts_ms == start) == [
        ("cheat", "delivery_shortfall"), ("ghost", "missing_readings")]
    # Any one of the claim's bundles checks with the stock verifier, every server out of reach.
    bundle = tmp_path / "bundle.json"
    bundle.write_text(report.claims[0].bundles()[0].model_dump_json())
    dead = free_port()
    env = {**child_env(s), "CITYGRID_CHAIN__URL": f"ws://127.0.0.1:{dead}",
           "CITYGRID_KAFKA__BOOTSTRAP": f"127.0.0.1:{dead}"}
    ok = subprocess.run([sys.executable, "-m", "citygrid", "ledger", "verify", str(bundle), "--offline",
                         "--anchorer", key], env=env, cwd=tmp_path, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and "VALID" in ok.stdout, ok.stdout + ok.stderr


def test_an_interval_with_only_honest_trades_exits_zero(anchored, tmp_path: Path, child_env) -> None:
    s, _, start, trades_file = anchored
    honest = [t for t in json.loads(trades_file.read_text()) if t["seller"] == "honest"]
    only = tmp_path / "honest.json"
    only.write_text(json.dumps(honest))
    run = subprocess.run([sys.executable, "-m", "citygrid", "ledger", "delivery", str(start), "--trades",
                          str(only), "-o", str(tmp_path / "r.json"), "--no-offline"], env=child_env(s),
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # The buyer bought 100 Wh and took 250: more than it bought is not a shortfall.
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 flagged" in " ".join(run.stdout.split())
