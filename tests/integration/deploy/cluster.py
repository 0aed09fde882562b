"""Helpers of the chart tests on a real control plane: helm as the cluster admin, a namespace that
enforces Pod Security "restricted", and the Secrets the chart's README tells an operator to create."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from citygrid.devtools import kube

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "citygrid"
VALUES = {"default": [], "production": ["-f", str(CHART / "ci" / "production-values.yaml")]}
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


@dataclass
class Helm:
    """helm (built by scripts/setup/helm.sh) as the control plane's cluster admin, with its own homes."""

    plane: kube.ControlPlane
    binary: Path = ROOT / ".cache" / "helm" / "helm"

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run helm; on failure (if `check`) fail the test with helm's output."""
        home = self.plane.run_dir / "helm"
        env = {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig), "HELM_CACHE_HOME": str(home / "cache"),
               "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
        done = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=env, timeout=180)
        if check and done.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def manifest(self, release: str, namespace: str) -> list[dict[str, Any]]:
        """The objects of the release's current revision, as helm applied them."""
        out = self("get", "manifest", release, "-n", namespace).stdout
        return [d for d in yaml.safe_load_all(out) if d]


def restricted_namespace(api: kube.KubeApi, name: str) -> str:
    """Create a namespace that enforces (and warns and audits) Pod Security "restricted"."""
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": RESTRICTED}})
    return name


# --- the Secrets an operator creates before `helm install`, as the chart's README lists them -------

def documented_secrets() -> list[tuple[str, list[str]]]:
    """(values path, Secret keys) for each row of the README's "Secrets the chart expects" table."""
    text = (CHART / "README.md").read_text()
    section = text.split("## Secrets the chart expects", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        keys = [k for k in re.findall(r"`([^`]+)`", cells[1]) if re.fullmatch(r"[-._A-Za-z0-9]+", k)]
        rows += [(path, keys) for path in re.findall(r"`([^`]+)`", cells[0])]
    return rows


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.removesuffix("[].name").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if path.endswith("[].name"):
        return [entry["name"] for entry in node or []]
    return node


def create_documented_secrets(api: kube.KubeApi, namespace: str,
                              values: dict[str, Any]) -> dict[str, set[str]]:
    """Create every Secret the README tells an operator to create for these values (placeholder
    contents: nothing runs them); returns Secret name → its keys. Existing ones are left alone."""
    made: dict[str, set[str]] = {}
    for path, keys in documented_secrets():
        found = _lookup(values, path)
        for name in found if isinstance(found, list) else [found] if found else []:
            made.setdefault(name, set()).update(keys)
    existing = {s["metadata"]["name"] for s in api.items(f"/api/v1/namespaces/{namespace}/secrets")}
    for name, keys in made.items():
        if name in existing:
            continue
        docker = ".dockerconfigjson" in keys
        data = {k: base64.b64encode(b'{"auths": {}}' if docker else f"placeholder {k}".encode()).decode()
                for k in keys}
        api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", {
            "metadata": {"name": name}, "data": data,
            "type": "kubernetes.io/dockerconfigjson" if docker else "Opaque"})
    return made
