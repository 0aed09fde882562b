"""Anchored roots read back from the dev chain's events, and proof bundles verified offline.

The anchorer runs on the real Kafka and the shared Chopsticks chain; the offline verification runs
in a child process whose chain, Kafka and MQTT settings all point at a closed port, so it can only
pass on what the bundle carries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_port, publish_signed, running_anchorer, wait_until

from citygrid.ledger.anchor_history import anchor_problem
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.proofs import ProofBundle, build_bundle, verify_offline, verify_on_chain
from citygrid.ledger.remarks import remark_hash
from citygrid.reading import Reading, SignedReading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry

pytestmark = pytest.mark.timeout(180)

INTERVAL_S = 60


@pytest.fixture(scope="module")
def anchored(servers: CitygridSettings, tmp_path_factory: pytest.TempPathFactory, committed_offsets):
    """Readings of two devices over two intervals, anchored on the dev chain by a real anchorer."""
    from support import isolated_settings

    from citygrid.stream.kafka_topics import ensure_topics

    base = isolated_settings(tmp_path_factory.mktemp("anchor"))
    s = base.model_copy(update={"anchor": base.anchor.model_copy(update={
        "interval_s": INTERVAL_S, "idle_flush_s": 0.5})})
    ensure_topics(s.kafka, [s.kafka.readings_topic])
    keys = [DeviceKey.generate() for _ in range(2)]
    registry = DeviceRegistry()
    for k in keys:
        registry.add(k.public_key)
    registry.save(s.paths.device_registry)
    start = (int(time.time() * 1000) // (INTERVAL_S * 1000) - 3) * INTERVAL_S * 1000
    readings = [Reading(device=k.device_id, seq=i, ts_ms=start + i * 20_000, kind="meter",
                        values={"p_kw": 1.5 + i})
                for k in keys for i in range(5)]  # 0..80 s: two intervals
    by_device = {k.device_id: k for k in keys}
    publish_signed(s, [(r, by_device[r.device]) for r in readings])
    with running_anchorer(s) as anchorer:
        wait_until(what="anchoring", check=lambda: anchorer.store.counts()[2] == len(readings)
                   and not anchorer.store.batches(pending_only=True))
        wait_until(what="offsets committed", timeout_s=20, check=lambda: committed_offsets(
            s, s.kafka.readings_topic, s.kafka.anchor_group) == len(readings))
    yield s, anchorer, readings, by_device
    anchorer.chain.close()


def test_anchored_roots_read_back_from_chain_events(anchored) -> None:
    _, anchorer, readings, _ = anchored
    key = "0x" + anchorer.keypair.public_key.hex()
    batches = anchorer.store.batches()
    assert len(batches) == 2 and sum(b.count for b in batches) == len(readings)
    for b in batches:
        assert anchor_problem(anchorer.chain, b, key) is None
        events = anchorer.chain.remarked(b.block_hash)
        assert (b.extrinsic_index, key, remark_hash(b.remark)) in events
    # The read-back really compares: another anchorer, or a store whose root was altered, is caught.
    assert "not the anchorer" in anchor_problem(anchorer.chain, batches[0], "0x" + "00" * 32)
    altered = batches[0].__class__(**{**batches[0].__dict__, "root": b"\x11" * 32,
                                      "remark": batches[0].remark[:-64] + "11" * 32})
    assert "hash differs" in anchor_problem(anchorer.chain, altered, key)


def test_every_bundle_verifies_offline_and_online(anchored) -> None:
    _, anchorer, readings, by_device = anchored
    key = "0x" + anchorer.keypair.public_key.hex()
    for r in readings:
        bundle = build_bundle(anchorer.store, r.device, r.seq, by_device[r.device].public_key,
                              anchorer.chain)
        again = ProofBundle.model_validate_json(bundle.model_dump_json())
        reading, scheme = verify_offline(again, key, bundle.block.genesis_hash)
        assert reading == r
        assert scheme == "chopsticks-blake2-concat"
        assert verify_on_chain(again, anchorer.chain, key) == r


def cli_offline(s: CitygridSettings, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    dead = free_port()  # nothing listens there
    env = s.as_env()
    env.update({"CITYGRID_CHAIN__URL": f"ws://127.0.0.1:{dead}", "CITYGRID_KAFKA__BOOTSTRAP":
                f"127.0.0.1:{dead}", "CITYGRID_MQTT__PORT": str(dead)})
    return subprocess.run([sys.executable, "-m", "citygrid", "ledger", "verify", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def tampered(bundle: ProofBundle, what: str) -> ProofBundle:
    """A copy of the bundle with one part changed."""
    ev = bundle.block
    assert ev is not None
    if what == "header":
        return bundle.model_copy(update={"block": ev.model_copy(update={"header": ev.header[:-2] + "ff"})})
    if what == "extrinsics":
        exts = list(ev.extrinsics)
        exts[0] = exts[0][:-2] + ("00" if exts[0][-2:] != "00" else "01")
        return bundle.model_copy(update={"block": ev.model_copy(update={"extrinsics": exts})})
    if what == "remark":
        exts = list(ev.extrinsics)
        text = bundle.root.encode().hex()
        exts[bundle.extrinsic_index] = exts[bundle.extrinsic_index].replace(text, ("0" * 64).encode().hex())
        return bundle.model_copy(update={"block": ev.model_copy(update={"extrinsics": exts})})
    signed = bundle.signed()
    original = signed.reading()
    changed = Reading(**{**original.model_dump(), "values": {"p_kw": original.values["p_kw"] + 1}})
    forged = SignedReading(changed.body(), signed.signature).encode().hex()
    return bundle.model_copy(update={"envelope": forged})


def test_offline_cli_needs_no_servers_and_refuses_tampering(anchored, tmp_path: Path) -> None:
    s, anchorer, readings, _ = anchored
    key = "0x" + anchorer.keypair.public_key.hex()
    r = readings[-1]
    env = s.as_env()
    proof = tmp_path / "proof.json"
    made = subprocess.run([sys.executable, "-m", "citygrid", "ledger", "proof", r.device, str(r.seq), "-o",
                           str(proof)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    bundle = ProofBundle.model_validate_json(proof.read_text())
    assert bundle.block is not None

    ok = cli_offline(s, tmp_path, str(proof), "--offline", "--anchorer", key,
                     "--genesis", bundle.block.genesis_hash)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VALID" in ok.stdout and r.device in ok.stdout and "signature checked" in ok.stdout
    # The same bundle against the same dead ports, online, must fail: the offline pass used no server.
    online = cli_offline(s, tmp_path, str(proof), "--anchorer", key)
    assert online.returncode != 0

    reasons = {"header": "does not hash to block", "extrinsics": "not the ones the block header commits to",
               "remark": "not the ones the block header commits to", "reading": "Merkle path|reading itself"}
    for what, reason in reasons.items():
        bad = tmp_path / f"{what}.json"
        bad.write_text(tampered(bundle, what).model_dump_json())
        out = cli_offline(s, tmp_path, str(bad), "--offline", "--anchorer", key)
        assert out.returncode == 1, (what, out.stdout)
        assert "INVALID" in out.stdout
        flat = " ".join(out.stdout.split())
        assert any(part in flat for part in reason.split("|")), (what, flat)
        with pytest.raises(ProofInvalid):
            verify_offline(tampered(bundle, what), key)

    other = cli_offline(s, tmp_path, str(proof), "--offline", "--anchorer", "0x" + "22" * 32)
    assert other.returncode == 1 and "not the anchorer" in " ".join(other.stdout.split())
    wrong_chain = cli_offline(s, tmp_path, str(proof), "--offline", "--anchorer", key,
                              "--genesis", "0x" + "33" * 32)
    assert wrong_chain.returncode == 1 and "signed for chain" in " ".join(wrong_chain.stdout.split())
    legacy = bundle.model_copy(update={"block": None})
    with pytest.raises(ProofInvalid, match="no block evidence"):
        verify_offline(legacy, key)
    assert json.loads(proof.read_text())["block"]["extrinsics"]
