"""Device keys, derived device ids and the registry."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from citygrid.errors import ConfigError, UnknownDevice
from citygrid.signing import DeviceKey, DeviceRegistry, device_id_for


def test_device_id_is_derived_from_the_public_key() -> None:
    key = DeviceKey.generate()
    assert key.device_id == device_id_for(key.public_key)
    assert key.device_id != DeviceKey.generate().device_id
    assert key.device_id.startswith("d") and len(key.device_id) == 17


def test_key_file_round_trips_and_is_private(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    path = tmp_path / "k" / "dev.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DeviceKey.load(path).public_key == key.public_key


def test_unreadable_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(ConfigError):
        DeviceKey.load(tmp_path / "bad.key")


def test_repr_never_shows_the_secret() -> None:
    key = DeviceKey.generate()
    assert bytes(key.signing_key).hex() not in repr(key)


def test_registry_round_trip(tmp_path: Path) -> None:
    keys = [DeviceKey.generate() for _ in range(3)]
    registry = DeviceRegistry()
    ids = [registry.add(k.public_key) for k in keys]
    registry.save(tmp_path / "devices.json")
    loaded = DeviceRegistry.load(tmp_path / "devices.json")
    assert len(loaded) == 3
    assert [loaded.public_key(i) for i in ids] == [k.public_key for k in keys]
    with pytest.raises(UnknownDevice):
        loaded.public_key(DeviceKey.generate().device_id)


def test_registry_entry_that_does_not_match_its_key_is_refused(tmp_path: Path) -> None:
    a, b = DeviceKey.generate(), DeviceKey.generate()
    (tmp_path / "devices.json").write_text(json.dumps({a.device_id: b.public_key.hex()}))
    with pytest.raises(ConfigError):
        DeviceRegistry.load(tmp_path / "devices.json")
