"""Canary first, then parallel batches; a failed batch stops the rollout before the next one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from citygrid.ops.deploy import Deployed
from citygrid.ops.device_config import Device
from citygrid.ops.errors import DeployError
from citygrid.ops.rollout import batches, roll_out


def _fleet(n: int) -> list[Device]:
    return [Device(name=f"pi-{i}", host=f"10.0.0.{i + 1}", device_key=Path("k")) for i in range(n)]


def test_canary_alone_then_batches_in_file_order() -> None:
    groups = batches(_fleet(6), 2)
    assert [[d.name for d in g] for g in groups] == [["pi-0"], ["pi-1", "pi-2"], ["pi-3", "pi-4"], ["pi-5"]]
    assert batches([], 3) == []


def test_batches_deploy_in_parallel_and_all_succeed() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def deploy(d: Device) -> Deployed:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return Deployed(d.name, "r2", "r1", "systemd", 1.0)

    out = roll_out(_fleet(7), deploy, batch_size=3)
    assert out.ok and [r.device for r in out.deployed] == [f"pi-{i}" for i in range(7)]
    assert peak == 3


def test_a_failed_canary_stops_the_rollout() -> None:
    called: list[str] = []

    def deploy(d: Device) -> Deployed:
        called.append(d.name)
        raise DeployError(f"{d.name}: no reading; rolled back")

    out = roll_out(_fleet(4), deploy, batch_size=2)
    assert called == ["pi-0"] and not out.ok
    assert list(out.failed) == ["pi-0"] and out.skipped == ["pi-1", "pi-2", "pi-3"]


def test_a_failed_batch_finishes_its_devices_then_stops() -> None:
    def deploy(d: Device) -> Deployed:
        if d.name == "pi-2":
            raise DeployError("pi-2: rolled back")
        return Deployed(d.name, "r2", "r1", "run-unit", 2.0)

    seen: list[str] = []
    out = roll_out(_fleet(6), deploy, batch_size=2, on_result=lambda d, _r: seen.append(d.name))
    assert [r.device for r in out.deployed] == ["pi-0", "pi-1"]
    assert list(out.failed) == ["pi-2"] and out.skipped == ["pi-3", "pi-4", "pi-5"]
    assert seen == ["pi-0", "pi-1", "pi-2"]
