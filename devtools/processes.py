"""Starting and stopping citygrid's own processes (ingest, workers, anchorer) as children."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start `python -m citygrid ARGS…` with its output in `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        return subprocess.Popen([sys.executable, "-m", "citygrid", *args], env=env,
                                stdout=logf, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, timeout_s: float = 30) -> int:
    """SIGTERM so the process flushes and commits, then wait; SIGKILL if it hangs."""
    proc.terminate()
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
