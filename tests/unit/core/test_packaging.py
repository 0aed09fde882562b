"""The installed distribution maps the source folders under the `citygrid` namespace."""

from __future__ import annotations

from importlib.metadata import files


def test_wheel_installs_parts_under_the_citygrid_namespace() -> None:
    installed = {str(f) for f in files("citygrid") or []}
    for module in ("citygrid/__init__.py", "citygrid/reading.py", "citygrid/edge/__init__.py",
                   "citygrid/stream/ingest.py", "citygrid/merkle.py"):
        assert module in installed
    assert not any(f.startswith(("edge/", "stream/", "ledger/", "core/")) for f in installed)
