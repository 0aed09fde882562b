"""The Modbus TCP driver against a real pymodbus server process serving a real SimBench profile."""

from __future__ import annotations

import numpy as np
import pytest
from support import free_port

from citygrid.edge.errors import SensorError
from citygrid.edge.modbus_meter import ModbusMeter
from citygrid.settings import CitygridSettings
from citygrid.sim.profiles import STEP_S, load_profiles

pytestmark = pytest.mark.timeout(60)
CACHE = CitygridSettings().paths.cache_dir


def test_reads_consecutive_profile_samples_over_modbus_tcp(meter_server: int) -> None:
    got = list(ModbusMeter("127.0.0.1", meter_server, poll_s=0.01, samples=8).measurements())
    assert len(got) == 8
    kw = [v["p_kw"] for _, v in got]
    profile = next(p for p in load_profiles(CACHE) if p.kind == "meter").kw
    # Eight consecutive samples are a contiguous run of the real profile (float32 on the wire).
    starts = [i for i in range(len(profile) - 8)
              if np.allclose(profile[i:i + 8], kw, atol=1e-3)]
    assert starts, f"{kw} is not a run of the served profile"
    energy = [v["e_kwh"] for _, v in got]
    assert np.allclose(np.diff(energy), np.asarray(kw[1:]) * STEP_S / 3600, atol=1e-2)
    assert all(225 <= v["v_l1"] <= 235 for _, v in got)


def test_unreachable_meter_raises_a_sensor_error() -> None:
    with pytest.raises(SensorError, match="cannot connect"):
        next(ModbusMeter("127.0.0.1", free_port(), timeout_s=0.5).measurements())
