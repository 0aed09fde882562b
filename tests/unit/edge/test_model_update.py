"""Model updates: only the operator's signature over the right bytes and a newer serial installs;
a model that does not load leaves the current one in place; rollback returns the previous."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from citygrid.commands import ModelUpdateRejected, open_model_update, sign_model_update
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
    s = ModelStore(tmp_path / "models", operator.public_key)
    (tmp_path / "v1.onnx").write_bytes(models["1"])
    s.install(tmp_path / "v1.onnx", serial=1)
    return s


def test_genuine_update_is_installed_and_previous_kept(store: ModelStore, models, operator) -> None:
    model = store.apply(sign_model_update(models["2"], "load_nowcast", "2", 2, operator))
    assert (model.name, model.version) == ("load_nowcast", "2")
    assert store.current().version == "2"
    assert store.rollback().version == "1"
    assert store.current().version == "1"


def test_forged_update_is_refused(store: ModelStore, models) -> None:
    forged = sign_model_update(models["2"], "load_nowcast", "2", 2, DeviceKey.generate())
    with pytest.raises(ModelUpdateRejected, match="not signed by the trusted operator"):
        store.apply(forged)
    assert store.current().version == "1"


def test_swapped_model_bytes_fail_the_hash(store: ModelStore, models, operator) -> None:
    raw = msgpack.unpackb(sign_model_update(models["1"], "load_nowcast", "2", 2, operator))
    raw["o"] = models["2"]
    with pytest.raises(ModelUpdateRejected, match="do not match the signed SHA-256"):
        store.apply(msgpack.packb(raw))
    assert store.current().version == "1"


def test_replayed_older_serial_is_refused(store: ModelStore, models, operator) -> None:
    store.apply(sign_model_update(models["2"], "load_nowcast", "2", 5, operator))
    with pytest.raises(ModelUpdateRejected, match="not newer"):
        store.apply(sign_model_update(models["1"], "load_nowcast", "1", 4, operator))
    assert store.current().version == "2"


def test_model_that_does_not_load_keeps_the_current(store: ModelStore, operator) -> None:
    with pytest.raises(ModelUpdateRejected, match="does not load or run"):
        store.apply(sign_model_update(b"\x08\x07garbage", "load_nowcast", "9", 9, operator))
    assert store.current().version == "1"


def test_no_operator_key_accepts_nothing(models, operator) -> None:
    with pytest.raises(ModelUpdateRejected, match="no operator key"):
        open_model_update(sign_model_update(models["2"], "n", "2", 2, operator), b"")
