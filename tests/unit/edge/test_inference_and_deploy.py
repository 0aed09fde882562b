"""Feature rows, the release archive's layout and the systemd unit (pure logic)."""

from __future__ import annotations

import io
import math
import tarfile
from pathlib import Path

from citygrid.edge.inference import FEATURES, features
from citygrid.ops.deploy import Device, release_archive, unit_file


def test_features_are_newest_first_and_padded() -> None:
    row = features([1.0, 2.0], ts_ms=6 * 3600 * 1000)  # 06:00 UTC: a quarter of the day
    assert len(row) == len(FEATURES)
    assert row[:4] == [2.0, 1.0, 1.0, 1.0]
    assert math.isclose(row[4], 1.0) and abs(row[5]) < 1e-9


def test_release_holds_core_and_edge_as_installed_and_is_reproducible() -> None:
    a, b = release_archive(), release_archive()
    assert a == b  # the release id is a hash of these bytes: a redeploy must be a no-op
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        names = tar.getnames()
    assert "citygrid/reading.py" in names and "citygrid/edge/agent.py" in names
    tooling = ("citygrid/stream", "citygrid/ledger", "citygrid/sim", "citygrid/devtools", "citygrid/ops")
    assert not any(n.startswith(tooling) for n in names)


def test_unit_runs_the_current_release_with_its_config() -> None:
    unit = unit_file(Device(name="pi", host="h", device_key=Path("k"), root="/opt/cg"))
    assert "ExecStart=/opt/cg/current/venv/bin/python -m citygrid edge run" in unit
    assert "EnvironmentFile=/opt/cg/config/agent.env" in unit and "Restart=always" in unit
