"""A local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1.

It exists so the Helm chart is tested against what a real cluster's control plane accepts: admission
(Pod Security "restricted"), RBAC, immutable fields on upgrade, and the pods that only the controller
manager creates. No kubelet or container runtime runs, so pods are created and stay Pending.

Every connection is authenticated and encrypted: etcd serves TLS only and takes only the API server's
client certificate (the local CA's, `devtools.pki`); the API server serves TLS (its own certificate in
`--cert-dir`), knows two bearer tokens (a cluster admin for the tests and helm, and the controller
manager) and authorises with RBAC; service-account tokens are signed with a key pair made here. The
binaries are built by `scripts/setup/k8s.sh` into `.cache/k8s/<version>/`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citygrid.devtools.pki import LocalPki
from citygrid.devtools.server import Server, ServerError
from citygrid.storage import atomic_write

K8S_VERSION = "v1.36.3"  # scripts/setup/k8s.sh builds this version
SERVICE_CIDR = "10.96.0.0/16"
# Controllers that need nodes, a cloud or a network plugin; none exists here.
CONTROLLERS = "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service"
ADMIN_USER = "citygrid-admin"
# kind → (API prefix, resource): the kinds the chart makes and the ones controllers make from them.
RESOURCES = {
    "ConfigMap": ("/api/v1", "configmaps"), "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"), "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"), "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"), "Endpoints": ("/api/v1", "endpoints"),
    "Deployment": ("/apis/apps/v1", "deployments"), "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "ControllerRevision": ("/apis/apps/v1", "controllerrevisions"),
    "Job": ("/apis/batch/v1", "jobs"), "CronJob": ("/apis/batch/v1", "cronjobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
}


def resource_path(kind: str, namespace: str, name: str = "") -> str:
    """The API path of a namespaced object (or of the list, without a name)."""
    if kind not in RESOURCES:
        raise KeyError(f"{kind}: add its API path to citygrid.devtools.kube.RESOURCES")
    prefix, plural = RESOURCES[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def binaries(cache_dir: Path) -> Path:
    """The folder holding etcd, kube-apiserver and kube-controller-manager; fails loudly if unbuilt."""
    d = cache_dir / "k8s" / K8S_VERSION
    missing = [n for n in ("etcd", "kube-apiserver", "kube-controller-manager") if not (d / n).exists()]
    if missing:
        raise ServerError(f"{', '.join(missing)} not found in {d}; run scripts/setup/k8s.sh")
    return d


@dataclass(frozen=True)
class Ports:
    """The control plane's ports on 127.0.0.1."""

    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int


@dataclass
class KubeApi:
    """A minimal client of the API server: JSON over verified TLS with a bearer token."""

    url: str
    token: str
    ca_file: Path
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    def request(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        """One API call; raises KubeApiError with the server's status message on an HTTP error."""
        if self._context is None:
            self._context = ssl.create_default_context(cafile=str(self.ca_file))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._context, timeout=30) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise KubeApiError(exc.code, exc.read().decode(errors="replace")[:2000], method, path) from None
        return json.loads(text) if text.startswith("{") else {"text": text}

    def get(self, path: str) -> dict[str, Any]:
        """GET an object or a list."""
        return self.request("GET", path)

    def items(self, path: str) -> list[dict[str, Any]]:
        """The items of a list."""
        return self.get(path)["items"]


class KubeApiError(ServerError):
    """The API server answered an error status."""

    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        self.status = status
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, each a `Server` with its files in `run_dir`."""

    bin_dir: Path
    run_dir: Path
    ports: Ports
    servers: list[Server] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig of the cluster admin (for helm)."""
        return self.run_dir / "admin.kubeconfig"

    @property
    def api(self) -> KubeApi:
        """A client of the API server as the cluster admin."""
        return KubeApi(f"https://127.0.0.1:{self.ports.apiserver}", self._token("admin"),
                       self.run_dir / "apiserver" / "certs" / "apiserver.crt")

    def start(self) -> ControlPlane:
        """Start all three in order, each waited for; on any failure stop what started and raise."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        self._prepare_credentials()
        self.servers = [self._etcd(), self._apiserver(), self._controller_manager()]
        try:
            for server in self.servers:
                server.start()
        except Exception:
            self.stop()
            raise
        self._write_kubeconfig(self.kubeconfig, "admin")
        return self

    def stop(self) -> None:
        """Stop in reverse order (controllers first, etcd last)."""
        for server in reversed(self.servers):
            pid = server.pid()
            if pid is not None:
                # Started by this process: reap it as it exits, so `Server.stop` sees it gone at once
                # instead of polling a zombie for its whole grace period.
                threading.Thread(target=_reap, args=(pid,), daemon=True).start()
            server.stop()

    # --- credentials ---------------------------------------------------------------------------

    def _token(self, who: str) -> str:
        return (self.run_dir / "tokens" / who).read_text().strip()

    def _prepare_credentials(self) -> None:
        """The local CA's etcd certificates, two bearer tokens and the service-account key pair."""
        pki = LocalPki(self.run_dir / "pki").ensure()
        pki.issue(pki.dir / "apiserver-etcd.crt", pki.dir / "apiserver-etcd.key", "kube-apiserver",
                  client=True)
        tokens = self.run_dir / "tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)
        users = {"admin": (ADMIN_USER, "system:masters"),
                 "controller-manager": ("system:kube-controller-manager", "")}
        lines = []
        for who, (user, groups) in users.items():
            token = secrets.token_urlsafe(32)
            atomic_write(tokens / who, token.encode(), mode=0o600)
            lines.append(f'{token},{user},{user}' + (f',"{groups}"' if groups else ""))
        atomic_write(tokens / "known-tokens.csv", ("\n".join(lines) + "\n").encode(), mode=0o600)
        key = ec.generate_private_key(ec.SECP256R1())
        atomic_write(pki.dir / "sa.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            mode=0o600)
        atomic_write(pki.dir / "sa.pub", key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _write_kubeconfig(self, path: Path, who: str) -> None:
        ca = self.run_dir / "apiserver" / "certs" / "apiserver.crt"
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "citygrid-local",
            "clusters": [{"name": "citygrid-local", "cluster": {
                "server": f"https://127.0.0.1:{self.ports.apiserver}", "certificate-authority": str(ca)}}],
            "users": [{"name": who, "user": {"token": self._token(who)}}],
            "contexts": [{"name": "citygrid-local", "context": {"cluster": "citygrid-local", "user": who}}],
        }
        atomic_write(path, yaml.safe_dump(config).encode(), mode=0o600)

    # --- the three servers ---------------------------------------------------------------------

    def _etcd(self) -> Server:
        pki = self.run_dir / "pki"
        client, peer = (f"https://127.0.0.1:{p}" for p in (self.ports.etcd, self.ports.etcd_peer))
        tls = [f"--cert-file={pki / 'server.crt'}", f"--key-file={pki / 'server.key'}",
               f"--trusted-ca-file={pki / 'ca.crt'}", "--client-cert-auth"]
        peer_tls = [f"--peer-cert-file={pki / 'server.crt'}", f"--peer-key-file={pki / 'server.key'}",
                    f"--peer-trusted-ca-file={pki / 'ca.crt'}", "--peer-client-cert-auth"]

        def command(d: Path) -> list[str]:
            return [str(self.bin_dir / "etcd"), "--name=local", f"--data-dir={d / 'data'}",
                    f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=local={peer}", "--listen-metrics-urls=",
                    "--log-level=warn", *tls, *peer_tls]

        def ready() -> bool:
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(pki / "apiserver-etcd.crt", pki / "apiserver-etcd.key")
            return _answers(f"{client}/health", ctx, '"health":"true"')

        return Server("etcd", self.ports.etcd, self.run_dir / "etcd", command, _nothing, ready, 60)

    def _apiserver(self) -> Server:
        pki = self.run_dir / "pki"
        d = self.run_dir / "apiserver"

        def command(d: Path) -> list[str]:
            return [
                str(self.bin_dir / "kube-apiserver"), "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1", f"--secure-port={self.ports.apiserver}",
                f"--cert-dir={d / 'certs'}", f"--etcd-servers=https://127.0.0.1:{self.ports.etcd}",
                f"--etcd-cafile={pki / 'ca.crt'}", f"--etcd-certfile={pki / 'apiserver-etcd.crt'}",
                f"--etcd-keyfile={pki / 'apiserver-etcd.key'}",
                "--authorization-mode=RBAC", "--anonymous-auth=false",
                f"--token-auth-file={self.run_dir / 'tokens' / 'known-tokens.csv'}",
                "--enable-admission-plugins=PodSecurity",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false", "-v=1",
            ]

        def ready() -> bool:
            ca = d / "certs" / "apiserver.crt"
            return ca.exists() and _answers(f"https://127.0.0.1:{self.ports.apiserver}/readyz",
                                            ssl.create_default_context(cafile=str(ca)), "ok",
                                            self._token("admin"))

        return Server("kube-apiserver", self.ports.apiserver, d, command, _nothing, ready, 120)

    def _controller_manager(self) -> Server:
        pki = self.run_dir / "pki"
        d = self.run_dir / "controller-manager"

        def prepare(d: Path) -> None:
            self._write_kubeconfig(d / "kubeconfig", "controller-manager")

        def command(d: Path) -> list[str]:
            return [
                str(self.bin_dir / "kube-controller-manager"), f"--kubeconfig={d / 'kubeconfig'}",
                "--bind-address=127.0.0.1", f"--secure-port={self.ports.controller_manager}",
                f"--cert-dir={d / 'certs'}", f"--controllers={CONTROLLERS}", "--leader-elect=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.run_dir / 'apiserver' / 'certs' / 'apiserver.crt'}",
                "--use-service-account-credentials", f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false", "-v=1",
            ]

        def ready() -> bool:
            ca = d / "certs" / "kube-controller-manager.crt"
            return ca.exists() and _answers(f"https://127.0.0.1:{self.ports.controller_manager}/healthz",
                                            ssl.create_default_context(cafile=str(ca)), "ok")

        return Server("kube-controller-manager", self.ports.controller_manager, d, command, prepare, ready,
                      90)


def _reap(pid: int) -> None:
    """Wait for a child process (no-op for one another process started)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _nothing(_: Path) -> None:
    """Nothing to prepare: the credentials are made for all three servers at once."""


def _answers(url: str, context: ssl.SSLContext, expect: str, token: str | None = None) -> bool:
    """Whether `url` answers 200 with `expect` in its body over verified TLS."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context,
                                    timeout=5) as resp:
            return resp.status == 200 and expect in resp.read().decode(errors="replace")
    except (OSError, ssl.SSLError):
        return False
