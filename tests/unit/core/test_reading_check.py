"""Batch verification on worker threads gives the same verdicts, in the same order, as checking each
reading on its own: a forged, malformed or unknown reading inside a batch is refused, the genuine
readings around it verified."""

from __future__ import annotations

from pathlib import Path

from citygrid.errors import ReadingRejected
from citygrid.reading import Reading, SignedReading, sign_reading
from citygrid.reading_check import BatchChecks, ReadingChecker, RegistryFile
from citygrid.signing import DeviceKey, DeviceRegistry

T0 = 1_750_000_000_000


def _envelope(key: DeviceKey, seq: int) -> bytes:
    reading = Reading(device=key.device_id, seq=seq, ts_ms=T0 + seq, kind="meter", values={"p_kw": seq / 7})
    return sign_reading(reading, key).encode()


def test_batch_verdicts_match_one_by_one_checks_in_record_order(tmp_path: Path) -> None:
    device, stranger = DeviceKey.generate(), DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(device.public_key)
    registry.save(tmp_path / "devices.json")
    genuine = [_envelope(device, i) for i in range(101)]
    forged_body = Reading(device=device.device_id, seq=5, ts_ms=T0, kind="meter", values={"p_kw": 9e5}).body()
    forged = SignedReading(forged_body, stranger.sign(forged_body)).encode()
    batch = [*genuine[:40], forged, b"\xc1 not msgpack", _envelope(stranger, 1), *genuine[40:]]

    checks = BatchChecks(RegistryFile(tmp_path / "devices.json"), workers=3)
    try:
        verdicts = checks.submit(batch).result()
        assert checks.submit([]).result() == []
    finally:
        checks.close()

    one_by_one = ReadingChecker(tmp_path / "devices.json")
    assert len(verdicts) == len(batch)
    for envelope, verdict in zip(batch, verdicts, strict=True):
        expected = one_by_one.reading_or_none(envelope)
        if expected is None:
            assert isinstance(verdict, ReadingRejected)
        else:
            assert verdict == (expected.device, expected.seq, expected.ts_ms)
    reasons = [v.reason for v in verdicts if isinstance(v, ReadingRejected)]
    assert reasons == ["bad_signature", "malformed", "unknown_device"]
