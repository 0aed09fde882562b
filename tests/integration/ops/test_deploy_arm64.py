"""`citygrid edge deploy` to an arm64 Debian bookworm device (qemu-user-static, binfmt_misc; built by
scripts/setup/arm64.sh): the project's wheel installed with [edge] from the package index as aarch64
wheels, the agent started as its unit says, and the deploy proven by the device's first signed reading
in Kafka; a release whose model does not load never publishes, so it is rolled back and the previous
release publishes again. `citygrid edge status` then reports the device's release, model and last
reading.

Bounded when warm: the root filesystem is cached (.cache/arm64/rootfs) and so are the aarch64 wheels
the device's pip downloaded from the index the first time (.cache/arm64/wheels, installed from
offline after); the broken release differs only in its model, so it reuses the venv.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RunningIngest, free_port

from citygrid.devtools.arm64 import Arm64Device, prefetch_wheels, start_device
from citygrid.ops.deploy import deploy_device
from citygrid.ops.device_config import Device, DeviceTrust, agent_env
from citygrid.ops.enroll import enroll_device
from citygrid.ops.errors import DeployError
from citygrid.ops.first_reading import FirstReadingGate
from citygrid.ops.release import Release, model_label
from citygrid.ops.remote import Remote
from citygrid.ops.status import device_status, last_readings
from citygrid.settings import CitygridSettings
from citygrid.signing import DeviceKey
from citygrid.storage import atomic_write

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture
def arm64(tmp_path: Path, wheel: Path) -> Iterator[Arm64Device]:
    """A fresh arm64 device (copy-on-write over the cached root filesystem) with its sshd on a free port,
    its pip installing from the wheels its own pip downloaded from the index (once per dependency set)."""
    cache = CitygridSettings().paths.cache_dir
    prefetch_wheels(cache, wheel, tmp_path / "prefetch")
    device = start_device(cache, tmp_path / "arm64", free_port(), wheelhouse=True)
    yield device
    device.close()


def _enrolled_device(live: CitygridSettings, tmp_path: Path, arm64: Arm64Device, meter: int
                     ) -> tuple[Device, DeviceKey, CitygridSettings]:
    key = DeviceKey.generate()
    key.save(tmp_path / "pi.key")
    atomic_write(tmp_path / "pi.key.mqtt.env",
                 enroll_device(live, key.public_key, "meter", "d1", "tests").env(), mode=0o600)
    authority = DeviceKey.generate()
    authority.save(tmp_path / "command.key")
    s = live.model_copy(update={"traffic": live.traffic.model_copy(
        update={"command_key_file": tmp_path / "command.key"})})
    device = Device(name="pi-arm64", host="127.0.0.1", port=arm64.port, user="root", ssh_key=arm64.client_key,
                    device_key=tmp_path / "pi.key", modbus=f"127.0.0.1:{meter}", district="d1")
    return device, key, s


def test_arm64_deploy_is_proven_by_its_first_reading_and_a_broken_release_is_rolled_back(
        arm64: Arm64Device, live: CitygridSettings, meter_server: int, small_model: Path, wheel: Path,
        tmp_path: Path) -> None:
    device, key, s = _enrolled_device(live, tmp_path, arm64, meter_server)
    trust, env = DeviceTrust.from_settings(s), agent_env(s)
    good = Release.from_files(wheel, small_model)
    assert model_label(good.model) == "load_nowcast 2"
    ingest = RunningIngest(live)
    try:
        t0 = time.monotonic()
        done = deploy_device(device, good, env, trust, arm64.known_hosts, gate=FirstReadingGate(s.kafka, 300))
        first_deploy_s = time.monotonic() - t0
        assert done.previous is None and done.started_by == "run-unit" and done.first_reading_s is not None
        _runs_on_aarch64(device, arm64)
        status = device_status(device, arm64.known_hosts, last_readings(s.kafka))
        assert (status.release, status.release_model) == (done.release, "load_nowcast 2")
        assert status.agent == "running"
        assert status.device_id == key.device_id and status.model == "load_nowcast 2"  # scored on the device

        # A release whose model does not load: its agent never publishes, so it is rolled back.
        broken = Release(good.wheel_name, good.wheel, b"not an ONNX model")
        t1 = time.monotonic()
        with pytest.raises(DeployError, match="no reading of"):
            deploy_device(device, broken, env, trust, arm64.known_hosts, gate=FirstReadingGate(s.kafka, 60))
        rollback_s = time.monotonic() - t1
        with Remote(device, arm64.known_hosts) as r:
            assert json.loads(r.read("/opt/citygrid-edge/current/release.json"))["release"] == done.release
            assert r.sh("ls /opt/citygrid-edge/releases").split() == [done.release]
            since = r.now_ms()
        # The previous release keeps publishing, scored by its model.
        watch = FirstReadingGate(s.kafka, 180).open(key.device_id)
        try:
            again, _ = watch.first(since, "load_nowcast 2")
        finally:
            watch.close()
        assert again is not None, "the rolled-back release does not publish"
    finally:
        ingest.close()
    print(f"arm64: first deploy {first_deploy_s:.0f} s (first reading {done.first_reading_s:.0f} s after "
          f"the start); broken release rolled back in {rollback_s:.0f} s")


def _runs_on_aarch64(device: Device, arm64: Arm64Device) -> None:
    """The release's interpreter and its onnxruntime are the aarch64 builds from the package index."""
    with Remote(device, arm64.known_hosts) as r:
        out = r.sh("/opt/citygrid-edge/current/venv/bin/python -c 'import platform, onnxruntime, numpy; "
                   "print(platform.machine(), onnxruntime.__version__, numpy.__version__)' 2>/dev/null")
    assert out.split() == ["aarch64", "1.32.0", "2.4.6"], out
