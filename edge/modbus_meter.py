"""Modbus TCP meter driver: what real energy meters and PV inverters speak on the field bus.

Register map (holding registers, big-endian words, device id 1), a compact
subset of what commercial meters expose:
  0-1  active power, kW, float32 (positive = import)
  2-3  energy imported, kWh, float32
  4-5  voltage L1, V, float32
  6    sample counter, uint16 (advances with every new measurement)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from citygrid.edge.errors import SensorError

log = structlog.get_logger(__name__)

REG_POWER, REG_ENERGY, REG_VOLTAGE, REG_COUNTER, REG_COUNT = 0, 2, 4, 6, 7


@dataclass
class ModbusMeter:
    """Polls a meter over Modbus TCP; yields one measurement each time its sample counter advances."""

    host: str
    port: int
    device_id: int = 1
    poll_s: float = 0.05
    samples: int | None = None  # stop after this many (None: run until the meter goes away)
    timeout_s: float = 3.0
    kind: str = "meter"

    def _read(self, client: ModbusTcpClient) -> tuple[int, dict[str, float]]:
        try:
            rr = client.read_holding_registers(REG_POWER, count=REG_COUNT, device_id=self.device_id)
        except ModbusException as exc:
            raise SensorError(f"Modbus meter {self.host}:{self.port} did not answer: {exc}; "
                              "check its address and that it is powered") from exc
        if rr.isError():
            raise SensorError(f"Modbus meter {self.host}:{self.port} refused the read: {rr}")
        regs = rr.registers
        f32 = client.DATATYPE.FLOAT32
        values = {
            "p_kw": round(float(client.convert_from_registers(regs[0:2], f32)), 4),
            "e_kwh": round(float(client.convert_from_registers(regs[2:4], f32)), 4),
            "v_l1": round(float(client.convert_from_registers(regs[4:6], f32)), 2),
        }
        return regs[REG_COUNTER], values

    def measurements(self) -> Iterator[tuple[int, dict[str, float]]]:
        """Each new sample the meter publishes, stamped when it was read."""
        client = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=1)
        if not client.connect():
            raise SensorError(f"cannot connect to Modbus meter {self.host}:{self.port}; is it reachable?")
        try:
            last, sent = None, 0
            while self.samples is None or sent < self.samples:
                counter, values = self._read(client)
                if counter != last:
                    last = counter
                    sent += 1
                    yield int(time.time() * 1000), values
                else:
                    time.sleep(self.poll_s)
        finally:
            client.close()
