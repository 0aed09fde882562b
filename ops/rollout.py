"""Deploying a release to a fleet: one canary first, then the rest in parallel batches.

The canary is the first device of the devices file. Only once its first reading proves the release on
a real device do other devices get it, so a release that cannot publish costs one device's few
minutes, never the fleet's. The others follow `batch_size` at a time, in parallel (each its own SSH
session and Kafka watch); a batch with a failed device stops the rollout there: the devices not yet
reached stay on the release they run, and each failed one was already rolled back by its deploy.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from citygrid.ops.deploy import Deployed
from citygrid.ops.device_config import Device
from citygrid.ops.errors import DeployError

log = structlog.get_logger(__name__)


@dataclass
class Rollout:
    """What happened to each device: deployed, failed (rolled back) or not reached."""

    deployed: list[Deployed] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # device name → why (it was rolled back)
    skipped: list[str] = field(default_factory=list)  # not reached: the rollout stopped before them

    @property
    def ok(self) -> bool:
        """Every device runs the release."""
        return not self.failed and not self.skipped


def batches(devices: list[Device], batch_size: int) -> list[list[Device]]:
    """The canary alone, then the other devices `batch_size` at a time, in the devices file's order."""
    if not devices:
        return []
    rest = devices[1:]
    return [devices[:1], *(rest[i:i + batch_size] for i in range(0, len(rest), max(1, batch_size)))]


def roll_out(devices: list[Device], deploy: Callable[[Device], Deployed], batch_size: int = 4,
             on_result: Callable[[Device, Deployed | DeployError], None] | None = None) -> Rollout:
    """Deploy to the canary, then to the rest in parallel batches; stop after a batch with a failure."""
    out = Rollout()
    groups = batches(devices, batch_size)
    for n, group in enumerate(groups):
        with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix="deploy") as pool:
            results = list(pool.map(lambda d: _one(d, deploy), group))
        for d, result in zip(group, results, strict=True):
            if isinstance(result, DeployError):
                out.failed[d.name] = str(result)
            else:
                out.deployed.append(result)
            if on_result:
                on_result(d, result)
        if any(d.name in out.failed for d in group):
            out.skipped = [d.name for g in groups[n + 1:] for d in g]
            log.error("rollout_stopped", batch=n, canary=n == 0, failed=sorted(out.failed),
                      not_reached=len(out.skipped))
            break
    return out


def _one(d: Device, deploy: Callable[[Device], Deployed]) -> Deployed | DeployError:
    try:
        return deploy(d)
    except DeployError as exc:
        return exc
