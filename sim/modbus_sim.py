"""A Modbus TCP energy meter serving a real SimBench household profile, for tests and demos.

It runs the real pymodbus server (a separate process: `python -m citygrid.sim.modbus_sim`),
so the driver is exercised over a real TCP socket and the real Modbus protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np
from pymodbus.client import ModbusTcpClient
from pymodbus.server import StartAsyncTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from citygrid.edge.modbus_meter import REG_COUNT, REG_POWER
from citygrid.settings import get_settings
from citygrid.sim.profiles import STEP_S, load_profiles

F32 = ModbusTcpClient.DATATYPE.FLOAT32


def registers(p_kw: float, e_kwh: float, v: float, counter: int) -> list[int]:
    """The register block for one measurement (see citygrid.edge.modbus_meter)."""
    enc = ModbusTcpClient.convert_to_registers
    return [*enc(p_kw, F32), *enc(e_kwh, F32), *enc(v, F32), counter & 0xFFFF]


async def serve(port: int, profile_index: int, step_s: float, cache_dir: Path) -> None:
    """Serve the profile, advancing one quarter-hour every `step_s` seconds of wall time."""
    meters = [p for p in load_profiles(cache_dir) if p.kind == "meter"]
    kw = meters[profile_index % len(meters)].kw.astype(float)
    energy = np.cumsum(kw) * STEP_S / 3600
    t0 = time.monotonic()

    async def on_access(function_code: int, start_address: int, address: int, count: int,
                        current_registers: list[int], set_values: list | None) -> None:
        # Registers are computed on read, so every poll sees the sample of this moment.
        i = int((time.monotonic() - t0) / step_s) % len(kw)
        regs = registers(kw[i], energy[i], 230.0 + 3 * (kw[i] % 1), i + 1)
        offset = REG_POWER - start_address
        current_registers[offset:offset + REG_COUNT] = regs

    block = SimData(REG_POWER, values=[0] * REG_COUNT, datatype=DataType.REGISTERS)
    device = SimDevice(id=1, simdata=[block], action=on_access)
    await StartAsyncTcpServer(device, address=("127.0.0.1", port))


def main() -> None:
    """Command line: port, profile, seconds per quarter-hour."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--step-s", type=float, default=0.05)
    ap.add_argument("--cache-dir", type=Path, default=None, help="default: the settings' paths.cache_dir")
    a = ap.parse_args()
    asyncio.run(serve(a.port, a.profile, a.step_s, a.cache_dir or get_settings().paths.cache_dir))


if __name__ == "__main__":
    main()
