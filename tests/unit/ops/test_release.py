"""A release's id and manifest: what a device gets decides its id, and the model's version is read
from the ONNX file itself (as the readings it scores will carry it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citygrid.ops.errors import ReleaseError
from citygrid.ops.release import Release, model_label


def _onnx_with_metadata(name: str, version: str) -> bytes:
    """ONNX protobuf bytes holding only metadata_props (field 14), as `citygrid edge train` writes them."""
    def field(tag: int, data: bytes) -> bytes:
        return bytes([tag, len(data)]) + data

    props = b"".join(field(0x72, field(0x0A, k.encode()) + field(0x12, v.encode()))
                     for k, v in (("citygrid.name", name), ("citygrid.version", version)))
    return b"\x08\x09" + props


def test_release_id_changes_with_what_the_device_gets_and_how() -> None:
    base = Release("citygrid-0.1.0-py3-none-any.whl", b"wheel")
    assert base.id("pip /usr/bin/python3") == base.id("pip /usr/bin/python3")
    others = {Release(base.wheel_name, b"wheel2").id(), Release(base.wheel_name, b"wheel", b"m").id(),
              Release("citygrid-0.2.0-py3-none-any.whl", b"wheel").id(), base.id("provisioned")}
    assert base.id() not in others and len(others) == 4


def test_manifest_names_the_release_and_its_model() -> None:
    model = _onnx_with_metadata("load_nowcast", "7")
    assert model_label(model) == "load_nowcast 7"
    manifest = json.loads(Release("c.whl", b"w", model).manifest("pip"))
    assert manifest["release"] == Release("c.whl", b"w", model).id("pip")
    assert manifest["model"] == "load_nowcast 7" and len(manifest["model_sha256"]) == 64
    assert json.loads(Release("c.whl", b"w").manifest())["model"] is None


def test_a_model_without_citygrid_metadata_has_no_label() -> None:
    assert model_label(b"not an onnx model") is None
    assert model_label(None) is None


def test_from_files_wants_a_wheel(tmp_path: Path) -> None:
    (tmp_path / "citygrid.tar.gz").write_bytes(b"x")
    with pytest.raises(ReleaseError, match="not a wheel"):
        Release.from_files(tmp_path / "citygrid.tar.gz")
    (tmp_path / "citygrid-0.1.0-py3-none-any.whl").write_bytes(b"w")
    assert Release.from_files(tmp_path / "citygrid-0.1.0-py3-none-any.whl").wheel == b"w"
