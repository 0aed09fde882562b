"""CPU time and memory of a running process and its children, read from /proc (Linux; no psutil).

The anchorer verifies in child processes (anchor.verify_workers), so a stage's cost is its whole process
tree's. Memory is summed as PSS (each shared page split among the processes that map it), so forked
children that share their parent's pages are not counted twice as plain RSS sums would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """A process tree at one moment: CPU seconds used so far (user + system) and memory in bytes."""

    cpu_s: float
    pss_bytes: int
    rss_bytes: int
    processes: int


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    """Every live descendant of `pid`."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in bytes, 0 for a process gone meanwhile."""
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    kb = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.endswith(" kB")}
    return kb.get("Pss", 0) * 1024, kb.get("Rss", 0) * 1024


def usage(pid: int) -> Usage:
    """The tree rooted at `pid`: CPU of the live processes plus what their reaped children used."""
    cpu, pss, rss, n = 0.0, 0, 0, 0
    for p in [pid, *children(pid)]:
        fields = _stat(p)
        if fields is None:
            continue
        # Fields 14-17 of stat (utime, stime, cutime, cstime), here 11-14 after the name's removal.
        cpu += sum(int(f) for f in fields[11:15]) / TICKS_PER_S
        p_pss, p_rss = _memory(p)
        pss, rss, n = pss + p_pss, rss + p_rss, n + 1
    return Usage(cpu, pss, rss, n)
