"""Model updates: only the command key's signature over the right bytes, for this device, with a newer
serial installs; a model that does not load leaves the current one in place; rollback returns the previous;
a refused update is remembered, an oversized one refused on its length."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from citygrid.commands import CommandRejected, ModelUpdateRejected, sign_model_update
from citygrid.edge.model_update import ModelStore
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.sim.train_models import train


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out, cache = tmp_path_factory.mktemp("m"), CitygridSettings().paths.cache_dir
    v1 = train(cache, out, version="1", trees=3, max_profiles=1)["load_nowcast"]
    v2 = train(cache, out, version="2", trees=4, max_profiles=1)["load_nowcast"]
    return {"1": v1.read_bytes(), "2": v2.read_bytes()}


@pytest.fixture
def operator() -> DeviceKey:
    return DeviceKey.generate()


@pytest.fixture
def store(tmp_path: Path, models: dict[str, bytes], operator: DeviceKey) -> ModelStore:
    s = ModelStore(tmp_path / "models", operator.public_key, max_update_bytes=1 << 20)
    (tmp_path / "v1.onnx").write_bytes(models["1"])
    s.install(tmp_path / "v1.onnx", serial=1)
    return s


ME = "dme"


def update(onnx: bytes, version: str, serial: int, key: DeviceKey, device: str = ME) -> bytes:
    return sign_model_update(onnx, "load_nowcast", version, serial, key, device)


def test_genuine_update_is_installed_and_previous_kept(store: ModelStore, models, operator) -> None:
    model = store.apply(update(models["2"], "2", 2, operator), ME)
    assert (model.name, model.version) == ("load_nowcast", "2")
    assert store.current().version == "2"
    assert store.rollback().version == "1"
    assert store.current().version == "1"


def test_forged_update_is_refused(store: ModelStore, models) -> None:
    forged = update(models["2"], "2", 2, DeviceKey.generate())
    with pytest.raises(CommandRejected, match="not signed by the trusted command key"):
        store.apply(forged, ME)
    assert store.current().version == "1"


def test_swapped_model_bytes_fail_the_hash(store: ModelStore, models, operator) -> None:
    raw = msgpack.unpackb(update(models["1"], "2", 2, operator))
    raw["a"] = models["2"]
    swapped = msgpack.packb(raw)
    with pytest.raises(ModelUpdateRejected, match=r"(bytes do not match|the signed manifest says)"):
        store.apply(swapped, ME)
    assert store.current().version == "1"
    # Redelivered (a retained message after a restart): skipped as known, without examining it again.
    restarted = ModelStore(store.dir, operator.public_key, max_update_bytes=1 << 20)
    with pytest.raises(ModelUpdateRejected, match="refused before"):
        restarted.apply(swapped, ME)
    assert restarted.current().version == "1"


def test_update_for_another_device_is_refused(store: ModelStore, models, operator) -> None:
    with pytest.raises(CommandRejected) as info:
        store.apply(update(models["2"], "2", 2, operator, device="dother"), ME)
    assert info.value.reason == "wrong_target"
    assert store.current().version == "1"


def test_oversized_update_is_refused_on_its_length(store: ModelStore, operator) -> None:
    with pytest.raises(CommandRejected) as info:
        store.apply(b"\x00" * (store.max_update_bytes + 1), ME)
    assert info.value.reason == "too_large"
    assert not (store.dir / "refused.json").exists()  # not even hashed and remembered


def test_replayed_older_serial_is_refused(store: ModelStore, models, operator) -> None:
    store.apply(update(models["2"], "2", 5, operator), ME)
    with pytest.raises(ModelUpdateRejected, match="not newer"):
        store.apply(update(models["1"], "1", 4, operator), ME)
    assert store.current().version == "2"


def test_model_that_does_not_load_keeps_the_current(store: ModelStore, operator) -> None:
    with pytest.raises(ModelUpdateRejected, match="does not load or run"):
        store.apply(update(b"\x08\x07garbage", "9", 9, operator), ME)
    assert store.current().version == "1"


def test_no_command_key_accepts_nothing(models, operator, tmp_path: Path) -> None:
    with pytest.raises(CommandRejected, match="no command key"):
        ModelStore(tmp_path / "bare").apply(update(models["2"], "2", 2, operator), ME)


def test_a_provisioned_model_never_lowers_the_serial_updates_must_exceed(store: ModelStore, models, operator,
                                                                         tmp_path: Path) -> None:
    store.apply(update(models["2"], "2", 5, operator), ME)
    (tmp_path / "release.onnx").write_bytes(models["1"])
    store.install(tmp_path / "release.onnx")  # a deploy's release model (serial 0)
    assert store.current().version == "1"
    with pytest.raises(ModelUpdateRejected, match="not newer"):  # the old update cannot come back
        store.apply(update(models["2"], "2", 4, operator), ME)
