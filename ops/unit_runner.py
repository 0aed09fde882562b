"""Run the agent's systemd unit where no systemd runs (a container, a chroot, a test host).

`citygrid edge deploy` copies this file to such a device (config/run-unit.py) and starts it with the
system python3 (standard library only: it must run before any release's venv is known to work). It does
what systemd would do with the same unit file, so the agent starts exactly as it does on a real device:
  LoadCredential=NAME:PATH   private copies (0400) in a credentials directory, the unit's %d;
  Environment=, then EnvironmentFile= over them (systemd's precedence); PATH as systemd sets it;
  StateDirectory=            the state directory given here (created 0700), replacing /var/lib/NAME;
  WorkingDirectory=, ExecStart=, and Restart=always with RestartSec= (the agent is restarted when it
  exits, as a crash-looping release would be under systemd).
What it cannot do: the sandbox (DynamicUser=, ProtectSystem= …) needs systemd; the deploy says so.
It makes itself a session leader and writes its pid, so the deploy stops it and its agent with one
signal to the process group.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unit_values(text: str) -> dict[str, list[str]]:
    """Each key of the unit's lines and its values, in order (a key may repeat)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value)
    return values


def prepare(unit: dict[str, list[str]], state: Path, credentials: Path
            ) -> tuple[list[str], dict[str, str], Path]:
    """The command line, environment and working directory of the unit's ExecStart."""
    state_dirs = [f"/var/lib/{name}" for name in unit.get("StateDirectory", [])]

    def expand(text: str) -> str:
        for d in state_dirs:
            text = text.replace(d, str(state))
        return text.replace("%d", str(credentials)).replace("%%", "%")

    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials.mkdir(mode=0o700, parents=True, exist_ok=True)
    for spec in unit.get("LoadCredential", []):
        name, source = spec.split(":", 1)
        target = credentials / name
        target.unlink(missing_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o400)
    env = {"PATH": SYSTEMD_PATH}
    env |= dict(spec.split("=", 1) for spec in unit.get("Environment", []))
    for env_file in unit.get("EnvironmentFile", []):
        env |= dict(line.split("=", 1) for line in Path(env_file).read_text().splitlines() if "=" in line)
    (exec_start,) = unit["ExecStart"]
    workdir = Path(expand(unit.get("WorkingDirectory", [str(state)])[0]))
    return [expand(a) for a in shlex.split(exec_start)], {k: expand(v) for k, v in env.items()}, workdir


def supervise(argv: list[str], env: dict[str, str], cwd: Path, restart: bool, restart_s: float) -> int:
    """Run the command until it exits (again and again with Restart=always) or SIGTERM arrives."""
    child: subprocess.Popen | None = None
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        child = subprocess.Popen(argv, env=env, cwd=cwd)
        code = child.wait()
        print(f"run-unit: agent exited with {code}", flush=True)
        if stopping or not restart:
            return code
        time.sleep(restart_s)
        if stopping:
            return code


def main(args: list[str] | None = None) -> int:
    """Entry point: run-unit.py UNIT --state DIR --run DIR."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("unit", type=Path)
    p.add_argument("--state", type=Path, required=True, help="The unit's StateDirectory here.")
    p.add_argument("--run", type=Path, required=True, help="Where the pid file and credentials go.")
    a = p.parse_args(args)
    if os.getpgrp() != os.getpid():
        os.setsid()
    a.run.mkdir(mode=0o700, parents=True, exist_ok=True)
    (a.run / "agent.pid").write_text(f"{os.getpid()}\n")
    unit = unit_values(a.unit.read_text())
    argv, env, cwd = prepare(unit, a.state, a.run / "credentials")
    restart = unit.get("Restart", ["no"])[0] in ("always", "on-failure")
    return supervise(argv, env, cwd, restart, float(unit.get("RestartSec", ["0.1"])[0]))


if __name__ == "__main__":
    sys.exit(main())
