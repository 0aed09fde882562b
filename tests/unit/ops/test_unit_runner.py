"""run-unit.py runs the deployed unit as systemd would where no systemd runs: private credential copies,
Environment= then EnvironmentFile=, the state directory, and Restart=always."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from support import wait_until

from citygrid.ops import unit_runner
from citygrid.ops.device_config import STATE_DIR, Device, unit_file


def _installed(tmp_path: Path) -> Path:
    root = tmp_path / "cg"
    (root / "config").mkdir(parents=True)
    env = "CITYGRID_MQTT__PORT=8883\nCITYGRID_PATHS__DATA_DIR=/var/lib/citygrid-edge\n"
    for name, text in (("agent.env", env), ("device.key", "00" * 32), ("mqtt-credentials.json", "{}"),
                       ("mqtt-ca.crt", "CA")):
        (root / "config" / name).write_text(text)
    (root / "config/citygrid-edge.service").write_text(
        unit_file(Device(name="pi", host="h", device_key=Path("k"), root=str(root))))
    return root


def test_prepare_does_what_systemd_does_with_the_unit(tmp_path: Path) -> None:
    root = _installed(tmp_path)
    unit = unit_runner.unit_values((root / "config/citygrid-edge.service").read_text())
    argv, env, cwd = unit_runner.prepare(unit, tmp_path / "state", tmp_path / "run/credentials")
    creds = tmp_path / "run/credentials"
    assert argv[:4] == [f"{root}/current/venv/bin/python", "-m", "citygrid", "edge"]
    assert argv[argv.index("--key") + 1] == f"{creds}/device.key"
    assert argv[argv.index("--outbox") + 1] == f"{tmp_path}/state/outbox.db"  # STATE_DIR mapped
    assert env["CITYGRID_MQTT__CREDENTIALS_FILE"] == f"{creds}/mqtt-credentials.json"
    assert env["CITYGRID_MQTT__PORT"] == "8883" and env["CITYGRID_PATHS__DATA_DIR"] == f"{tmp_path}/state"
    assert STATE_DIR not in " ".join([*argv, *env.values()])
    assert cwd == tmp_path / "state" and (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in creds.iterdir()} == {
        "device.key": 0o400, "mqtt-credentials.json": 0o400, "mqtt-ca.crt": 0o400}


def test_restart_always_restarts_the_agent_and_sigterm_stops_both(tmp_path: Path) -> None:
    marks = tmp_path / "starts"
    unit = tmp_path / "u.service"
    unit.write_text(f"[Service]\nExecStart=/bin/sh -c 'echo x >> {marks}; exit 3'\nRestart=always\n"
                    "RestartSec=0.2\nStateDirectory=u\n")
    runner = subprocess.Popen([sys.executable, unit_runner.__file__, str(unit),
                               "--state", str(tmp_path / "s"), "--run", str(tmp_path / "run")])
    wait_until(lambda: marks.exists() and len(marks.read_text().split()) >= 3, 20,
               "the agent to be restarted twice", every_s=0.1)
    assert int((tmp_path / "run/agent.pid").read_text()) == runner.pid
    runner.terminate()
    assert runner.wait(10) in (3, -15, 0)
    count = len(marks.read_text().split())
    time.sleep(0.5)
    assert len(marks.read_text().split()) == count  # nothing restarts it after SIGTERM
