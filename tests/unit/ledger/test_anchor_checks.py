"""What the anchorer lets become a leaf, without Kafka or a chain: only verified readings, one per
(device, seq), the verified one first; a forged or out-of-bounds record is refused, never a crash."""

from __future__ import annotations

from pathlib import Path

import msgpack
from prometheus_client import REGISTRY

from citygrid.ledger.anchor_store import AnchorStore
from citygrid.ledger.anchorer import Anchorer
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey, DeviceRegistry

T0 = 1_750_000_000_000


def _refused(reason: str) -> float:
    return REGISTRY.get_sample_value("citygrid_anchor_refused_total", {"reason": reason}) or 0.0


def _anchorer(settings: CitygridSettings, *keys: DeviceKey) -> Anchorer:
    registry = DeviceRegistry()
    for k in keys:
        registry.add(k.public_key)
    registry.save(settings.paths.device_registry)
    return Anchorer(settings, AnchorStore(settings.paths.anchor_store), None, None)  # type: ignore[arg-type]


def _reading(key: DeviceKey, seq: int, value: float) -> Reading:
    return Reading(device=key.device_id, seq=seq, ts_ms=T0 + seq * 1000, kind="meter", values={"p_kw": value})


def test_a_forgery_written_first_never_takes_the_genuine_readings_slot(settings: CitygridSettings) -> None:
    device, attacker = DeviceKey.generate(), DeviceKey.generate()
    anchorer = _anchorer(settings, device)
    genuine = sign_reading(_reading(device, 7, 1.5), device).encode()
    body = _reading(device, 7, 500.0).body()
    forged = SignedReading(body, attacker.sign(body)).encode()
    before = _refused("bad_signature")
    assert anchorer.place(forged) is None
    assert _refused("bad_signature") == before + 1
    assert anchorer.place(genuine) is not None
    assert anchorer.batcher.held(device.device_id, 7) == genuine
    assert anchorer.place(genuine) is None  # re-read after a restart: harmless


def test_a_second_verified_reading_for_a_taken_slot_is_refused_as_conflicting(
        settings: CitygridSettings) -> None:
    device = DeviceKey.generate()
    anchorer = _anchorer(settings, device)
    first = sign_reading(_reading(device, 3, 1.0), device).encode()
    other = sign_reading(_reading(device, 3, 2.0), device).encode()
    anchorer.place(first)
    before = _refused("conflicting")
    assert anchorer.place(other) is None
    assert _refused("conflicting") == before + 1
    # Once anchored (in the store), the same holds.
    start, leaves = anchorer.batcher.drain()[0]
    anchorer.store.add_batch(start, b"\0" * 32, "remark", leaves)
    assert anchorer.place(other) is None and anchorer.store.envelope(device.device_id, 3) == first


def test_seq_beyond_int64_and_garbage_are_refused_and_the_next_reading_placed(
        settings: CitygridSettings) -> None:
    device = DeviceKey.generate()
    anchorer = _anchorer(settings, device)
    body = msgpack.packb({"device": device.device_id, "kind": "meter", "schema_version": 1, "seq": 2**63,
                          "ts_ms": T0, "values": {"p_kw": 1.0}}, use_bin_type=True)
    huge = SignedReading(body, device.sign(body)).encode()
    assert anchorer.place(huge) is None
    assert anchorer.place(b"\xc1 not msgpack") is None
    assert anchorer.place(sign_reading(_reading(device, 8, 1.0), device).encode()) is not None


def test_a_device_enrolled_after_start_is_recognised(settings: CitygridSettings, tmp_path: Path) -> None:
    late = DeviceKey.generate()
    anchorer = _anchorer(settings)
    envelope = sign_reading(_reading(late, 0, 1.0), late).encode()
    assert anchorer.place(envelope) is None
    registry = DeviceRegistry.load(settings.paths.device_registry)
    registry.add(late.public_key)
    registry.save(settings.paths.device_registry)
    assert anchorer.place(envelope) is not None
