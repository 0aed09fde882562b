"""Which metrics the dashboards' PromQL reads, and which metrics the processes really export."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry

# All project metrics carry this prefix, so a metric reference is a prefixed identifier
# outside quoted strings; PromQL functions and label names never start with it.
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])citygrid_[A-Za-z0-9_:]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# The parts whose modules define the cluster processes' metrics.
PROCESS_PACKAGES = ("citygrid.stream", "citygrid.ledger", "citygrid.edge")
# Sample names prometheus-client exposes for a family of each type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def metric_names(expr: str) -> set[str]:
    """The citygrid metric (sample) names a PromQL expression reads."""
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def panel_exprs(board: dict) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows included."""
    for panel in board.get("panels", []):
        yield from panel_exprs(panel)
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield panel.get("title", ""), target["expr"]


def exported_metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every sample name the processes' modules register (importing them all first), e.g.
    `x_total`, `x_bucket`, as Prometheus would scrape them."""
    for package in PROCESS_PACKAGES:
        _import_tree(package)
    names: set[str] = set()
    for family in registry.collect():
        names |= {sample.name for sample in family.samples}
        # A labelled metric has no samples until a label value is first used, but it is exported.
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names


def _import_tree(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
        importlib.import_module(info.name)
