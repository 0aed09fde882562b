"""The walking skeleton, end to end on the real Mosquitto, Kafka and dev chain.

Signed readings replayed from real SimBench profiles travel edge → MQTT → ingest →
Kafka → Faust worker and anchorer → chain, and every reading's inclusion proof
verifies against the chain; bad input ends in the dead-letter topic, counted.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from support import wait_until

from citygrid.devtools.processes import spawn, stop
from citygrid.ledger.anchorer import Anchorer
from citygrid.ledger.errors import ProofInvalid
from citygrid.ledger.proofs import ProofBundle, build_bundle, verify_on_chain
from citygrid.mqtt import Publisher
from citygrid.reading import Reading, SignedReading
from citygrid.settings import CitygridSettings
from citygrid.sim.fleet import provision, replay_fleet, send_bad_readings
from citygrid.stream.ingest import Ingest
from citygrid.stream.kafka_topics import read_topic, topic_end
from citygrid.topics import readings_topic

pytestmark = pytest.mark.timeout(300)


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("citygrid_ingest_rejected_total", {"reason": reason}) or 0.0


def test_signed_readings_travel_from_edge_to_chain_and_prove_inclusion(
    live: CitygridSettings, tmp_path: Path
) -> None:
    s = live.model_copy(update={"anchor": live.anchor.model_copy(update={"interval_s": 3600,
                                                                         "idle_flush_s": 1.0})})
    fleet = provision(s, 3)
    before = {r: rejected(r) for r in ("malformed", "bad_signature", "duplicate")}
    stop_event = threading.Event()
    ingest = Ingest(s)
    anchorer = Anchorer.from_settings(s)
    threads = [threading.Thread(target=ingest.run, args=(stop_event,)),
               threading.Thread(target=anchorer.run, args=(stop_event,))]
    for t in threads:
        t.start()
    worker = spawn(["stream", "worker"], s.as_env(), tmp_path / "worker.log")
    try:
        sent = replay_fleet(s, fleet, steps=8)
        assert sent == 24
        bad = send_bad_readings(s, fleet[0])
        wait_until(what="readings in Kafka", check=lambda: topic_end(s.kafka, s.kafka.readings_topic) >= sent)

        # Replay one genuine reading: the ingest must refuse it as a duplicate.
        replayed = read_topic(s.kafka, s.kafka.readings_topic)[0].value
        # Only the device itself may publish on its topic: replayed by the device's own identity.
        pub = Publisher(fleet[0].creds.apply(s.mqtt), "replayer")
        pub.connect()
        pub.publish(readings_topic(s.mqtt.readings_topic, "d1", fleet[0].key.device_id), replayed)
        pub.close()
        wait_until(what="dead letters",
                   check=lambda: topic_end(s.kafka, s.kafka.dead_letter_topic) >= bad + 1)

        records = read_topic(s.kafka, s.kafka.readings_topic)
        readings = [SignedReading.decode(r.value).reading() for r in records]
        assert len(records) == sent
        assert len({(r.device, r.seq) for r in readings}) == sent
        assert all(r.key == r_.device.encode() for r, r_ in zip(records, readings, strict=True))

        dead = [json.loads(r.value) for r in read_topic(s.kafka, s.kafka.dead_letter_topic)]
        assert sorted(d["reason"] for d in dead) == ["bad_signature", "duplicate", "malformed"]
        assert all(d["payload_b64"] and d["error"] for d in dead)
        for reason, was in before.items():
            assert rejected(reason) == was + 1

        store = anchorer.store
        wait_until(what="anchoring",
                   check=lambda: store.counts()[2] == sent and not store.batches(pending_only=True))
        batches = store.batches()
        assert sum(b.count for b in batches) == sent
        # 8 quarter-hours ending now span two or three hourly intervals.
        assert 2 <= len(batches) <= 3

        anchor_key = "0x" + anchorer.keypair.public_key.hex()
        for r in readings:
            key = next(d.key for d in fleet if d.key.device_id == r.device)
            bundle = build_bundle(store, r.device, r.seq, key.public_key)
            assert verify_on_chain(bundle, anchorer.chain, anchor_key) == r

        bundle = build_bundle(store, r.device, r.seq, key.public_key)  # the last one checked above
        signed = bundle.signed()
        original = signed.reading()
        changed = Reading(**{**original.model_dump(), "values": {"p_kw": original.values["p_kw"] * 2 + 1}})
        tampered = bundle.model_copy(update={"envelope": SignedReading(changed.body(), signed.signature)
                                             .encode().hex()})
        with pytest.raises(ProofInvalid):
            verify_on_chain(tampered, anchorer.chain, anchor_key)
        with pytest.raises(ProofInvalid, match="not the anchorer"):
            verify_on_chain(bundle, anchorer.chain, "0x" + "00" * 32)
        wrong_root = bundle.model_copy(update={"root": "11" * 32})
        with pytest.raises(ProofInvalid):
            verify_on_chain(wrong_root, anchorer.chain, anchor_key)

        wait_until(what="the Faust worker", timeout_s=120,
                   check=lambda: topic_end(s.kafka, s.kafka.stats_topic) >= sent)
        stats = [json.loads(r.value) for r in read_topic(s.kafka, s.kafka.stats_topic)]
        final = collections.Counter()
        for st in stats:
            final[st["device"]] = max(final[st["device"]], st["count"])
        assert final == collections.Counter({d.key.device_id: 8 for d in fleet})
    finally:
        stop_event.set()
        for t in threads:
            t.join(30)
        stop(worker)


def test_ledger_cli_verifies_a_proof_and_refuses_a_tampered_one(
    live: CitygridSettings, tmp_path: Path
) -> None:
    s = live.model_copy(update={"anchor": live.anchor.model_copy(update={"idle_flush_s": 0.5})})
    fleet = provision(s, 1)
    stop_event = threading.Event()
    ingest, anchorer = Ingest(s), Anchorer.from_settings(s)
    threads = [threading.Thread(target=x.run, args=(stop_event,)) for x in (ingest, anchorer)]
    for t in threads:
        t.start()
    try:
        replay_fleet(s, fleet, steps=2)
        wait_until(what="anchoring", check=lambda: anchorer.store.counts()[2] == 2
                   and not anchorer.store.batches(pending_only=True))
    finally:
        stop_event.set()
        for t in threads:
            t.join(30)
    env = s.as_env()
    device = fleet[0].key.device_id

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "citygrid", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    proof = tmp_path / "proof.json"
    made = cli("ledger", "proof", device, "1", "-o", str(proof))
    assert made.returncode == 0, made.stdout + made.stderr
    ok = cli("ledger", "verify", str(proof))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VALID" in ok.stdout and device in ok.stdout

    bundle = ProofBundle.model_validate_json(proof.read_text())
    signed = bundle.signed()
    original = signed.reading()
    changed = Reading(**{**original.model_dump(), "values": {"p_kw": original.values["p_kw"] * 2 + 1}})
    forged = SignedReading(changed.body(), signed.signature).encode().hex()
    proof.write_text(bundle.model_copy(update={"envelope": forged}).model_dump_json())
    bad = cli("ledger", "verify", str(proof))
    assert bad.returncode == 1
    assert "INVALID" in bad.stdout
