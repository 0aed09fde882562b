"""The registry's enrolments: kind, district, owner, revocation; the old key-only format still read."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from citygrid.errors import ConfigError, DeviceRevoked, TopicMismatch, UnknownDevice
from citygrid.reading import Reading, sign_reading
from citygrid.signing import DeviceKey, DeviceRegistry
from citygrid.stream.validation import IngestValidator


def _signed(key: DeviceKey, seq: int = 0, kind: str = "meter") -> bytes:
    return sign_reading(Reading(device=key.device_id, seq=seq, ts_ms=int(time.time() * 1000), kind=kind,
                                values={"p_kw": 1.0}), key).encode()


def test_the_old_key_only_file_is_still_read_and_saved_in_the_new_format(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({key.device_id: key.public_key.hex()}))
    registry = DeviceRegistry.load(path)
    entry = registry.enrolment(key.device_id)
    assert entry.public_key == key.public_key and entry.district is None and not entry.revoked
    registry.save(path)
    assert json.loads(path.read_text())[key.device_id]["key"] == key.public_key.hex()
    assert DeviceRegistry.load(path).enrolment(key.device_id) == entry


def test_enrolment_round_trips_and_a_tampered_or_malformed_entry_is_refused(tmp_path: Path) -> None:
    key, other = DeviceKey.generate(), DeviceKey.generate()
    path = tmp_path / "devices.json"
    registry = DeviceRegistry()
    registry.add(key.public_key, kind="pv", district="north", owner="school")
    registry.save(path)
    entry = DeviceRegistry.load(path).enrolment(key.device_id)
    assert (entry.kind, entry.district, entry.owner) == ("pv", "north", "school")
    raw = json.loads(path.read_text())
    raw[key.device_id]["key"] = other.public_key.hex()
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="does not match"):
        DeviceRegistry.load(path)
    path.write_text(json.dumps({key.device_id: {"key": key.public_key.hex(), "revoked_at_ms": "soon"}}))
    with pytest.raises(ConfigError, match="revoked_at_ms"):
        DeviceRegistry.load(path)


def test_revocation_keeps_the_key_so_older_readings_still_verify(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(key.public_key, kind="meter", district="d1", owner="city")
    anchored_before = sign_reading(Reading(device=key.device_id, seq=7, ts_ms=1_700_000_000_000,
                                           kind="meter", values={"p_kw": 2.0}), key)
    first = registry.revoke(key.device_id, at_ms=1_800_000_000_000)
    assert registry.revoke(key.device_id, at_ms=1_900_000_000_000) == first  # the first revocation stands
    registry.save(tmp_path / "devices.json")
    loaded = DeviceRegistry.load(tmp_path / "devices.json")
    assert loaded.enrolment(key.device_id).revoked_at_ms == 1_800_000_000_000
    assert anchored_before.verify(loaded).seq == 7  # proofs of old readings keep working
    with pytest.raises(UnknownDevice):
        loaded.revoke(DeviceKey.generate().device_id, 1)


def test_the_ingest_refuses_revoked_devices_and_readings_off_their_enrolment() -> None:
    key, legacy = DeviceKey.generate(), DeviceKey.generate()
    registry = DeviceRegistry()
    registry.add(key.public_key, kind="meter", district="north", owner="city")
    registry.add(legacy.public_key)
    v = IngestValidator(registry)
    now = int(time.time() * 1000)
    assert v.check(_signed(key, 0), now, "north").seq == 0
    with pytest.raises(TopicMismatch, match="district"):
        v.check(_signed(key, 1), now, "south")
    with pytest.raises(TopicMismatch, match="enrolled as 'meter'"):
        v.check(_signed(key, 2, kind="pv"), now, "north")
    assert v.check(_signed(legacy, 0), now, "anywhere").seq == 0  # key-only entries keep the topic's
    registry.revoke(key.device_id, now)
    with pytest.raises(DeviceRevoked):
        v.check(_signed(key, 3), now, "north")
    # A refused reading did not move the window: the same seq passes once the device is re-enrolled.
    registry.add(key.public_key, kind="meter", district="north", owner="city")
    assert v.check(_signed(key, 1), now, "north").seq == 1
