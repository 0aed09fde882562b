"""One detached local server process: start it, tell when it is ready, stop it.

Servers run detached with pid files in their own directory, listen on 127.0.0.1
only, and keep their logs next to the pid files, so a later process (or
`citygrid servers down`) can find and stop what an earlier one started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from citygrid.errors import CitygridError

log = structlog.get_logger(__name__)


class ServerError(CitygridError):
    """A local server could not be installed, started or reached."""


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections there."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Server:
    """One detached server process and how to tell it is ready."""

    name: str
    port: int
    dir: Path  # its configuration, data, log and pid file
    command: Callable[[Path], list[str]]
    prepare: Callable[[Path], None]
    ready: Callable[[], bool]
    start_timeout_s: float = 90.0
    # Run once after this call started it and it answered (e.g. the broker's ACLs).
    after_start: Callable[[], None] | None = None

    def pid(self) -> int | None:
        """The running server's pid, or None."""
        try:
            pid = int((self.dir / "pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self) -> bool:
        """Start unless already up; True if this call started it."""
        if self.pid() and self.ready():
            return False
        if port_open("127.0.0.1", self.port):
            # Started by another checkout or by hand: use it if it answers like our server.
            if self.ready():
                log.info("server_reused", server=self.name, port=self.port)
                return False
            raise ServerError(f"port {self.port} is taken by something that is not {self.name}; "
                              "stop it or configure another port")
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        self.prepare(d)
        logf = open(d / "log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            self.command(d), cwd=d, stdout=logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        (d / "pid").write_text(str(proc.pid))
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (d / "log").read_text(errors="replace")[-2000:]
                raise ServerError(f"{self.name} exited with {proc.returncode}:\n{tail}")
            if port_open("127.0.0.1", self.port) and self.ready():
                log.info("server_ready", server=self.name, port=self.port, pid=proc.pid)
                if self.after_start is not None:
                    self.after_start()
                return True
            time.sleep(0.3)
        self.stop()
        raise ServerError(f"{self.name} not ready after {self.start_timeout_s:.0f}s; see {d / 'log'}")

    def stop(self) -> None:
        """Terminate the process group and wait for it."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                _reap(pid)
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        (self.dir / "pid").unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect the exit of a server this process started, so a stopped child does not linger as a
    zombie that still answers os.kill(pid, 0)."""
    # A server another process started is its parent's to collect.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
