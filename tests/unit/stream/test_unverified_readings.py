"""The learner re-verifies: a reading not signed by its registered device is skipped, counted and
listed for the dead letters, never learned; the registry file is re-read when it changes."""

from __future__ import annotations

from pathlib import Path

import msgpack
from prometheus_client import REGISTRY

from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.reading_check import ReadingChecker
from citygrid.settings import StreamSettings
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.learning import learn_batch

T0 = 1_750_000_000_000
S = StreamSettings(state_key="unit-test-state-key-of-32-chars!")


def _envelope(key: DeviceKey, seq: int, value: float = 1.0) -> bytes:
    return sign_reading(Reading(device=key.device_id, seq=seq, ts_ms=T0 + seq * 900_000, kind="meter",
                                values={"p_kw": value}), key).encode()


def _unverified(reason: str) -> float:
    return REGISTRY.get_sample_value("citygrid_stream_unverified_total", {"reason": reason}) or 0.0


def test_forged_and_unknown_readings_are_skipped_counted_and_listed(tmp_path: Path) -> None:
    genuine, stranger = DeviceKey.generate(), DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(genuine.public_key)
    registry.save(tmp_path / "devices.json")
    checker = ReadingChecker(tmp_path / "devices.json")
    # A forgery in the genuine device's name: its body, someone else's signature.
    body = Reading(device=genuine.device_id, seq=1, ts_ms=T0, kind="meter", values={"p_kw": 99.0}).body()
    forged = SignedReading(body, stranger.sign(body)).encode()
    huge_seq = msgpack.packb({"v": 1, "b": msgpack.packb(
        {"device": genuine.device_id, "kind": "meter", "schema_version": 1, "seq": 2**63, "ts_ms": T0,
         "values": {"p_kw": 1.0}}, use_bin_type=True), "s": b"\0" * 64})
    before = {r: _unverified(r) for r in ("bad_signature", "unknown_device")}
    records = [_envelope(genuine, 0), forged, _envelope(stranger, 0), huge_seq, _envelope(genuine, 2)]
    out = learn_batch([(None, e) for e in records], lambda _k: None, S, check=checker.check)
    assert [i for i, _r, _e in out.rejected] == [1, 2, 3]
    assert out.rejected[0][1] == "bad_signature" and out.rejected[1][1] == "unknown_device"
    assert _unverified("bad_signature") == before["bad_signature"] + 1
    assert _unverified("unknown_device") == before["unknown_device"] + 1
    assert len(out.forecasts) == 2 and set(out.states) == {genuine.device_id.encode()}

    # Enrolled after the worker started: recognised once the registry file changes.
    registry.add(stranger.public_key)
    registry.save(tmp_path / "devices.json")
    out = learn_batch([(None, _envelope(stranger, 0))], lambda _k: None, S, check=checker.check)
    assert out.rejected == [] and len(out.forecasts) == 1
