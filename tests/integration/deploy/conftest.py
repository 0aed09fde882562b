"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for the chart tests,
started once per module, and helm pointed at it as the cluster admin.

A failure to start (binaries not built, a server exiting, not ready in time) errors the tests loudly;
build the binaries with scripts/setup/k8s.sh.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from integration.deploy.cluster import Helm
from support import free_port

from citygrid.devtools import kube
from citygrid.settings import CitygridSettings


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube.ControlPlane]:
    """etcd + API server (RBAC, token auth, PodSecurity) + controller manager on free 127.0.0.1 ports."""
    bins = kube.binaries(CitygridSettings().paths.cache_dir)
    etcd = free_port(2)
    ports = kube.Ports(etcd=etcd, etcd_peer=etcd + 1, apiserver=free_port(), controller_manager=free_port())
    plane = kube.ControlPlane(bins, tmp_path_factory.mktemp("k8s"), ports).start()
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def helm(control_plane: kube.ControlPlane) -> Helm:
    """helm against the control plane; fails the test if helm is not built."""
    h = Helm(control_plane)
    if not h.binary.exists():
        pytest.fail(f"helm not found at {h.binary}; run scripts/setup/helm.sh")
    return h
