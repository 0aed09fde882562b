"""`citygrid market enrol`: one registry entry with a fresh order key the participant alone holds."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from citygrid.participants import Participants
from citygrid.signing import DeviceKey

ROOT = Path(__file__).resolve().parents[4]
ADDRESS = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def _enrol(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / ".dev"),
           "CITYGRID_PATHS__DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "citygrid", "market", "enrol", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_enrol_writes_the_registry_and_a_private_order_key(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "alice.key"
    done = _enrol(tmp_path, "alice", "--address", ADDRESS, "--key-file", str(key_file), "--bus",
                  "LV1.101 Bus 4", "--device", "m-a", "--device", "pv-a", "--buy-limit", "3000000",
                  "--sell-limit", "900000")
    assert done.returncode == 0, done.stderr + done.stdout
    entry = Participants.load(tmp_path / "participants.json").get("alice")
    assert entry.order_public_key == DeviceKey.load(key_file).public_key
    assert (entry.address, entry.bus, entry.devices, entry.buy_limit) == (
        ADDRESS, "LV1.101 Bus 4", ("m-a", "pv-a"), 3_000_000)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert DeviceKey.load(key_file).signing_key.encode().hex() not in done.stdout + done.stderr
    # Re-enrolling keeps the participant's key; a bad address changes nothing.
    assert _enrol(tmp_path, "alice", "--address", ADDRESS, "--key-file", str(key_file)).returncode == 0
    assert Participants.load(tmp_path / "participants.json").get("alice").order_key == entry.order_key
    bad = _enrol(tmp_path, "bob", "--address", "0xnot", "--key-file", str(tmp_path / "bob.key"))
    assert bad.returncode == 1 and "bob" not in Participants.load(tmp_path / "participants.json")
    assert not (tmp_path / "bob.key").exists()
