"""An SSH session to one device, and starting or stopping its agent there.

Where systemd runs, the agent is the `citygrid-edge` unit. Where it does not (a container, a chroot,
a board image without it), the deploy starts the same unit with config/run-unit.py
(citygrid.ops.unit_runner): same ExecStart, credentials, environment and restart policy, but not
systemd's sandbox; the deploy logs and reports that it did so.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import paramiko
import structlog

from citygrid.ops.errors import DeployError

if TYPE_CHECKING:
    from citygrid.ops.device_config import Device

log = structlog.get_logger(__name__)
UNIT = "citygrid-edge"
Starter = Literal["systemd", "run-unit"]


class Remote:
    """An SSH session to one device."""

    def __init__(self, d: Device, known_hosts: Path | None) -> None:
        self.device = d
        self.ssh = paramiko.SSHClient()
        if known_hosts:
            self.ssh.load_host_keys(str(known_hosts))
        else:
            self.ssh.load_system_host_keys()
        # An unknown host key is refused: deploying a key to an impostor would leak it.
        self.ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.ssh.connect(d.host, d.port, d.user, key_filename=str(d.ssh_key) if d.ssh_key else None,
                             timeout=15, allow_agent=False, look_for_keys=d.ssh_key is None)
        except (paramiko.SSHException, OSError) as exc:
            raise DeployError(f"{d.name}: cannot SSH to {d.user}@{d.host}:{d.port}: {exc}; check the "
                              "host key in known_hosts and the SSH key") from exc
        self.sftp = self.ssh.open_sftp()

    def sh(self, cmd: str, timeout_s: float = 600) -> str:
        """Run a shell command; raise DeployError with its output if it fails."""
        _, out, err = self.ssh.exec_command(cmd, timeout=timeout_s)
        status = out.channel.recv_exit_status()
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if status != 0:
            detail = (stderr or stdout)[-800:]
            raise DeployError(f"{self.device.name}: `{cmd[:120]}` failed ({status}): {detail}")
        return stdout

    def put(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """Write a file atomically (temp name, then rename)."""
        with self.sftp.open(path + ".tmp", "wb") as f:
            f.set_pipelined(True)
            f.write(data)
        self.sftp.chmod(path + ".tmp", mode)
        self.sftp.posix_rename(path + ".tmp", path)

    def put_if_changed(self, data: bytes, path: str, mode: int) -> bool:
        """`put` unless the file already holds `data` with `mode`; whether it wrote."""
        try:
            with self.sftp.open(path, "rb") as f:
                same = f.read() == data and (self.sftp.stat(path).st_mode or 0) & 0o777 == mode
        except OSError:
            same = False
        if not same:
            self.put(data, path, mode)
        return not same

    def read(self, path: str) -> str | None:
        """A small text file's contents, None if it is missing."""
        try:
            with self.sftp.open(path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return None

    def now_ms(self) -> int:
        """The device's clock (what its readings are stamped with)."""
        return int(self.sh("date +%s%3N").strip())

    def close(self) -> None:
        """End the SFTP channel and the SSH session."""
        self.sftp.close()
        self.ssh.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def has_systemd(r: Remote) -> bool:
    """Whether systemd is the device's init (only then can the unit run as a unit)."""
    return r.sh("test -d /run/systemd/system && echo yes || echo no").strip() == "yes"


def restart_agent(r: Remote, root: str) -> Starter:
    """(Re)start the agent of the `current` release: the unit under systemd, else run-unit.py."""
    q = shlex.quote
    if has_systemd(r):
        r.sh(f"ln -sf {q(root)}/config/{UNIT}.service /etc/systemd/system/{UNIT}.service && "
             f"systemctl daemon-reload && systemctl enable {UNIT} && systemctl restart {UNIT}")
        return "systemd"
    stop_agent(r, root)
    log.warning("no_systemd_on_device_agent_started_like_its_unit", device=r.device.name,
                how="config/run-unit.py: same ExecStart, credentials, environment and restart policy; "
                    "no systemd sandbox")
    run = f"{root}/run"
    # Only the runner goes to the background (braces), with none of this session's descriptors, so the
    # SSH command returns at once.
    r.sh(f"mkdir -p {q(run)} && chmod 700 {q(run)} && cd {q(root)} && {{ "
         f"setsid nohup {q(r.device.python)} {q(root)}/config/run-unit.py {q(root)}/config/{UNIT}.service "
         f"--state {q(root)}/state --run {q(run)} >{q(run)}/agent.log 2>&1 </dev/null & }}", timeout_s=30)
    return "run-unit"


def stop_agent(r: Remote, root: str) -> None:
    """Stop the agent (and its supervisor) if it runs; the unit under systemd, else run-unit.py."""
    q = shlex.quote
    if has_systemd(r):
        r.sh(f"systemctl stop {UNIT} || true")
        return
    pid = f"{root}/run/agent.pid"
    # SIGTERM to the supervisor's process group (it is a session leader): it and the agent stop.
    r.sh(f"if [ -s {q(pid)} ]; then p=$(cat {q(pid)}); kill -TERM -- -$p 2>/dev/null || true; "
         f"for i in $(seq 100); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; "
         f"kill -KILL -- -$p 2>/dev/null || true; rm -f {q(pid)}; fi", timeout_s=60)


def agent_running(r: Remote, root: str) -> bool:
    """Whether the agent's service (unit or run-unit.py) is up."""
    q = shlex.quote
    if has_systemd(r):
        return r.sh(f"systemctl is-active {UNIT} || true").strip() == "active"
    pid = f"{root}/run/agent.pid"
    return r.sh(f"[ -s {q(pid)} ] && kill -0 $(cat {q(pid)}) 2>/dev/null && echo yes || echo no"
                ).strip() == "yes"
