"""The Helm chart, rendered with the real helm binary, for every chart test."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
# The values files every chart test renders: the defaults and the production-like example.
VALUE_FILES = ("default", "production")


@dataclass(frozen=True)
class Chart:
    """The chart's folder, the Kubernetes version it is checked against, and helm to run on it."""

    root: Path = ROOT
    dir: Path = ROOT / "deploy" / "helm" / "citygrid"
    binary: Path = ROOT / ".cache" / "helm" / "helm"
    kube: str = "1.33.0"
    values: dict[str, list[str]] = field(default_factory=dict)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run helm with these arguments."""
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True, check=check,
                              timeout=60)

    def template(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        """`helm template` of the chart for this Kubernetes version, with extra arguments."""
        return self.helm("template", "cg", str(self.dir), "--kube-version", self.kube, *extra, check=check)

    def render(self, *extra: str) -> list[dict]:
        """The manifests the chart renders to (with extra helm arguments)."""
        return [d for d in yaml.safe_load_all(self.template(*extra).stdout) if d]


@pytest.fixture(scope="session")
def chart() -> Chart:
    """The chart; fails the test if helm is not installed."""
    c = Chart()
    c.values.update({"default": [], "production": ["-f", str(c.dir / "ci" / "production-values.yaml")]})
    if not c.binary.exists():
        pytest.fail(f"helm not found at {c.binary}; run scripts/setup/helm.sh")
    return c


@pytest.fixture(scope="module", params=VALUE_FILES)
def values_file(request: pytest.FixtureRequest) -> str:
    """Each values file's name in turn."""
    return request.param


@pytest.fixture(scope="module")
def manifests(values_file: str, chart: Chart) -> tuple[str, list[dict]]:
    """(values file name, its rendered manifests), once per values file."""
    return values_file, chart.render(*chart.values[values_file])
