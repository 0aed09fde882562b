"""From the scale benchmark's three fleet sizes to 1,000,000 devices, and into the chart's production values.

Per stage, two straight lines fitted on the measured sizes (least squares): CPU-seconds per reading
against the fleet size (so a per-reading cost that grows with the number of devices, as state outgrows
caches, is carried forward), and memory against the fleet size (its slope is the memory per device, its
intercept the process's own). At a stated reading rate the CPU line gives cores; instances follow from a
per-instance core budget (each role is one Python process per instance: one core at most, and headroom
left for catching up after a restart or rebalance) and memory budget (the devices' state split among
them), and Kafka partitions from the workers, which scale by partitions only (Kafka cannot shrink a
topic's partitions later, so room to double is set now).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

PROJECTED_DEVICES = 1_000_000
# Cores one instance may use at the stated rate: one Python process, 60 % busy, 40 % to catch up.
CORE_BUDGET = 0.6
# Memory one instance may hold: a worker's per-device state lives in its memory (Faust's memory:// tables
# and the unpickled models), so more instances are set where memory, not CPU, runs out first.
MEMORY_BUDGET = 4 * 2**30
# Roles that run N-way (the anchorer is one active instance with a standby, whatever its load).
SCALED = ("ingest", "worker")


@dataclass(frozen=True)
class Stage:
    """A stage's projection at one reading rate."""

    cpu_s_per_1k: float  # CPU-seconds per 1,000 readings at the projected fleet size
    memory_bytes: float  # all instances together
    memory_per_device: float  # bytes: the fitted slope
    cores: float
    instances: int

    def per_instance_memory(self) -> float:
        """Bytes each instance holds: the devices' share plus the process's own (the fit's intercept)."""
        own = self.memory_bytes - self.memory_per_device * PROJECTED_DEVICES
        return own + self.memory_per_device * PROJECTED_DEVICES / self.instances


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line; a flat line through one point."""
    if len(xs) < 2:
        return 0.0, ys[0]
    slope, intercept = np.polyfit(np.array(xs, float), np.array(ys, float), 1)
    return float(slope), float(intercept)


def project(sizes: list[dict], stage: str, rate_per_s: float) -> Stage:
    """One stage at PROJECTED_DEVICES sending `rate_per_s` readings in all. `sizes`: the benchmark's
    per-size results, each {"devices", "stages": {stage: {"cpu_s_per_1k", "memory_bytes"}}}."""
    devices = [r["devices"] for r in sizes]
    measured = [r["stages"][stage]["cpu_s_per_1k"] for r in sizes]
    cpu_slope, cpu_icpt = fit(devices, measured)
    # A per-reading cost never falls below the best measured one as the fleet grows.
    cpu = max(cpu_slope * PROJECTED_DEVICES + cpu_icpt, min(measured))
    mem_slope, mem_icpt = fit(devices, [r["stages"][stage]["memory_bytes"] for r in sizes])
    mem_slope = max(mem_slope, 0.0)
    cores = cpu / 1000 * rate_per_s
    own = max(mem_icpt, 0.0)
    devices_memory = mem_slope * PROJECTED_DEVICES
    instances = 1
    if stage in SCALED:
        instances = max(1, math.ceil(cores / CORE_BUDGET),
                        math.ceil(devices_memory / max(MEMORY_BUDGET - own, MEMORY_BUDGET / 2)))
    return Stage(cpu, devices_memory + own, mem_slope, cores, instances)


def partitions_for(workers: int) -> int:
    """Readings partitions: room for twice the workers, a multiple of 12 (divides evenly among 1, 2, 3,
    4, 6 or 12 members), never fewer than 12."""
    return max(12, math.ceil(2 * workers / 12) * 12)


def mebibytes(n: float) -> str:
    """A Kubernetes quantity in Mi, rounded up to 64 Mi."""
    return f"{max(64, math.ceil(n / 2**20 / 64) * 64)}Mi"


def millicores(cores: float) -> str:
    """A Kubernetes CPU quantity, rounded up to 100 m."""
    return f"{max(100, math.ceil(cores * 10) * 100)}m"


def chart_values(stages: dict[str, Stage]) -> dict[tuple[str, ...], str]:
    """The production values the projection sets: (section, key[, subkey]) → YAML scalar or flow map."""
    worker, ingest = stages["worker"], stages["ingest"]
    out: dict[tuple[str, ...], str] = {
        ("kafka", "partitions"): str(partitions_for(worker.instances)),
        ("ingest", "replicas"): str(ingest.instances),
        ("worker", "replicas"): str(worker.instances),
    }
    for name, st in stages.items():
        cpu = st.cores / st.instances
        memory = st.per_instance_memory() * 1.25  # a quarter above the projection: the request
        limit_cpu = "2" if name == "anchorer" else "1"  # the anchorer's verify processes use a core more
        out[(name, "resources", "requests")] = f"{{cpu: {millicores(cpu)}, memory: {mebibytes(memory)}}}"
        out[(name, "resources", "limits")] = f"{{cpu: \"{limit_cpu}\", memory: {mebibytes(2 * memory)}}}"
    return out


MARK = "# scale:"  # the header comment of the values this module wrote; a later run replaces it
TAG = "# scale"  # ends every line this module set


def write_values(text: str, values: dict[tuple[str, ...], str], note: str) -> str:
    """`text` (a values file) with each value set in place (ending in TAG), every other line and comment
    kept; keys that are missing are added at the end of their section. `note` heads the file."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(MARK)]
    for path, value in values.items():
        lines = _set(lines, path, f"{value}  {TAG}")
    header = [f"{MARK} {note}",
              f"{MARK} the lines ending in '{TAG}' hold its projection; a rerun rewrites them."]
    return "\n".join(header + lines) + "\n"


def _block(lines: list[str], start: int, indent: int) -> int:
    """The index after the block of lines indented deeper than `indent` that starts after `start`."""
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    return end


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _find(lines: list[str], key: str, start: int, end: int, indent: int) -> int | None:
    pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}:(\s|$)")
    return next((i for i in range(start, end) if pattern.match(lines[i])), None)


def _set(lines: list[str], path: tuple[str, ...], value: str) -> list[str]:
    start, end = -1, len(lines)
    for depth, key in enumerate(path):
        indent = 2 * depth
        at = _find(lines, key, start + 1, end, indent)
        last = depth == len(path) - 1
        if at is None:
            block_end = _block(lines, start, indent - 2) if start >= 0 else len(lines)
            pad = " " * indent
            new = [f"{pad}{key}: {value}" if last else f"{pad}{key}:"]
            lines = lines[:block_end] + new + lines[block_end:]
            at = block_end
        elif last:
            pad = " " * indent
            lines = [*lines[:at], f"{pad}{key}: {value}", *lines[at + 1:]]
        start, end = at, _block(lines, at, indent)
    return lines
