"""The Helm chart on a real Kubernetes control plane, in a namespace that enforces Pod Security
"restricted": install, upgrade, rollback and uninstall, for the default and the production values.

What only a cluster can tell: admission (the API server refuses a pod that breaks "restricted"; helm
shows its warnings), the pods the controller manager creates for each Deployment and StatefulSet,
immutable fields on upgrade, and what a rollback or an uninstall leaves. No kubelet runs here, so pods
are created and stay Pending. Every check reads what the API server stored, not what helm rendered.
"""

from __future__ import annotations

import ssl
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.deploy.cluster import CHART, VALUES, Helm, create_documented_secrets, restricted_namespace
from support import wait_until
from unit.deploy.test_chart_settings import chart_problems, pod_spec

from citygrid.devtools.kube import ControlPlane, KubeApi, KubeApiError, resource_path

WORKLOADS = ("Deployment", "StatefulSet")
# What an upgrade changes: more partitions and workers, another image, and the settler's trust settings.
UPGRADE = {
    "default": {"kafka": {"partitions": 8}, "worker": {"replicas": 6}},
    "production": {"kafka": {"partitions": 16}, "worker": {"replicas": 8}},
}
# Trust settings an upgrade changes where the chart has them: rotated credentials and CAs (new Secrets,
# created first as an operator would), the settler's fee account and the devices' command key.
ROTATED = ("mqtt.tlsSecret", "ingest.mqttCredentialsSecret", "deviceRegistry.secretName",
           "anchorer.signerSecret", "settler.signerSecret", "kafka.tls.secret", "kafka.auth.principalsSecret",
           "worker.stateKeySecret", "advisor.mqttCredentialsSecret", "advisor.commandKeySecret")
TRUST = {"settler.gridOperator": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
         "commands.publicKey": "cd" * 32}
# What a namespace holds before any release: the controller manager's CA bundle and default account.
NAMESPACE_BASICS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
LEFTOVER_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "Job", "Pod", "Service", "Endpoints",
                  "ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim", "PodDisruptionBudget",
                  "NetworkPolicy", "ControllerRevision")


def merged(*layers: dict) -> dict:
    """Values files merged as helm merges them (maps deeply, everything else replaced)."""
    out: dict = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(
                out.get(key), dict) else value
    return out


def _get(values: dict, path: str) -> Any:
    for part in path.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def _layer(path: str, value: Any) -> dict:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def upgrade_values(base: dict, values_file: str) -> tuple[dict, set[str]]:
    """The upgrade's values (over the installed ones) and the names of the rotated Secrets; only the
    settings the chart has are changed."""
    changes = merged(UPGRADE[values_file], {"image": {"tag": "0.2.0"}})
    rotated = set()
    for path in (p for p in ROTATED if _get(base, p)):
        rotated.add(new := f"{_get(base, path)}-rotated")
        changes = merged(changes, _layer(path, new))
    for path, value in TRUST.items():
        if _get(base, path) is not None:
            changes = merged(changes, _layer(path, value))
    return changes, rotated


def values_of(files: list[str]) -> dict:
    """The chart's values with these `-f` files over its defaults."""
    layers = [yaml.safe_load((CHART / "values.yaml").read_text())]
    layers += [yaml.safe_load(Path(f).read_text()) for f in files if f != "-f"]
    return merged(*layers)


def stored(api: KubeApi, ns: str, objects: list[dict]) -> list[dict]:
    """Each object as the API server stored it (fails if one is missing)."""
    return [{"kind": o["kind"], **api.get(resource_path(o["kind"], ns, o["metadata"]["name"]))}
            for o in objects]


OPERATORS = {"In": "{key} in ({values})", "NotIn": "{key} notin ({values})", "Exists": "{key}",
             "DoesNotExist": "!{key}"}


def selector(label_selector: dict[str, Any]) -> str:
    """The list query for a LabelSelector (matchLabels and matchExpressions; empty selects all)."""
    terms = [f"{k}={v}" for k, v in sorted(label_selector.get("matchLabels", {}).items())]
    terms += [OPERATORS[e["operator"]].format(key=e["key"], values=",".join(e.get("values", [])))
              for e in label_selector.get("matchExpressions", [])]
    return "?labelSelector=" + urllib.parse.quote(",".join(terms))


def refusals(api: KubeApi, ns: str) -> list[str]:
    """Every pod a controller could not create, with the API server's reason."""
    return [f"{e['involvedObject']['name']}: {e['message']}" for e in api.items(resource_path("Event", ns))
            if e["reason"] == "FailedCreate"]


def pending_pods(api: KubeApi, ns: str, names: list[tuple[str, str]], rollout: bool) -> list[str]:
    """Why the controllers have not yet made every pod of these workloads (empty when they have); a
    refused pod fails at once. Fresh, every pod must exist from the current template. In a `rollout`
    (upgrade, rollback) a rolling update waits for new pods to become ready before replacing the next,
    which never happens without a kubelet: there, the first pod from the new template must exist."""
    refused = refusals(api, ns)
    assert not refused, "the API server refused pods:\n" + "\n".join(refused)
    waiting = []
    for kind, name in names:
        w = api.get(resource_path(kind, ns, name))
        status, want = w.get("status", {}), w["spec"]["replicas"]
        rolling = rollout and (kind == "StatefulSet" or w["spec"]["strategy"]["type"] == "RollingUpdate")
        pods = api.items(resource_path("Pod", ns) + selector(w["spec"]["selector"]))
        live = len([p for p in pods if not p["metadata"].get("deletionTimestamp")])
        updated = status.get("updatedReplicas", 0)
        if (status.get("observedGeneration", 0) < w["metadata"]["generation"] or live != want
                or status.get("replicas") != want or not (updated >= 1 if rolling else updated == want)):
            waiting.append(f"{kind} {name}: {live} pods of {want}, {updated} from the current template")
    return waiting


def wait_for_pods(api: KubeApi, ns: str, objects: list[dict], rollout: bool = False) -> None:
    """Wait until every Deployment and StatefulSet of the release has its pods (see pending_pods)."""
    names = [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in WORKLOADS]
    assert names, "the release has no workloads"
    deadline = time.monotonic() + 60
    while waiting := pending_pods(api, ns, names, rollout):
        assert time.monotonic() < deadline, "after 60 s the controllers have not made: " + "; ".join(waiting)
        time.sleep(0.5)


def snapshot(objects: list[dict]) -> dict[str, Any]:
    """What a revision decides about each workload and ConfigMap: replicas, images, environments, data."""
    out: dict[str, Any] = {}
    for o in objects:
        key = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in WORKLOADS:
            containers = pod_spec(o)["containers"]
            out[key] = {"replicas": o["spec"]["replicas"], "images": [c["image"] for c in containers],
                        "env": [c.get("env", []) for c in containers], "volumes": pod_spec(o).get("volumes")}
        elif o["kind"] == "ConfigMap":
            out[key] = o.get("data", {})
    return out


def assert_settings_fit(objects: list[dict], values_file: str) -> None:
    """Every citygrid container's stored environment makes valid settings with all its process needs."""
    found = chart_problems(objects)
    assert {n.split("/")[0].removeprefix("cg-citygrid-") for n in found} >= {
        "ingest", "worker", "anchorer", "settler"}, found
    bad = {n: p for n, p in found.items() if p}
    assert not bad, f"{values_file}: " + "\n".join(f"{n}: {'; '.join(p)}" for n, p in bad.items())


def secret_refs(pod: dict) -> set[tuple[str, str | None]]:
    """(Secret name, key or None for all keys) for every Secret a pod template uses."""
    refs: set[tuple[str, str | None]] = {(s["name"], None) for s in pod.get("imagePullSecrets", [])}
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        refs |= {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                 for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        refs |= {(e["secretRef"]["name"], None) for e in c.get("envFrom", []) if "secretRef" in e}
    for v in pod.get("volumes", []):
        if "secret" in v:
            items = v["secret"].get("items") or [{"key": None}]
            refs |= {(v["secret"]["secretName"], i["key"]) for i in items}
    return refs


def configmap_refs(pod: dict) -> set[str]:
    """The ConfigMaps a pod template uses."""
    refs = {v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        refs |= {e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e}
        refs |= {e["valueFrom"]["configMapKeyRef"]["name"] for e in c.get("env", [])
                 if "configMapKeyRef" in e.get("valueFrom", {})}
    return refs


def value_paths(values: Any, wanted: str, prefix: str = "") -> list[str]:
    """The dotted values paths whose value is `wanted`."""
    if isinstance(values, dict):
        return [p for k, v in values.items() for p in value_paths(v, wanted, f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if values == wanted else []


def assert_references_hold(api: KubeApi, ns: str, objects: list[dict], secrets: dict[str, set[str]],
                           values: dict) -> None:
    """Service accounts, Secrets, ConfigMaps, PodDisruptionBudgets and NetworkPolicies point at what
    exists: the release's own objects, or what the README tells the operator to create."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    readme = (CHART / "README.md").read_text()
    for w in (o for o in objects if o["kind"] in (*WORKLOADS, "Job")):
        pod, who = pod_spec(w), w["metadata"]["name"]
        assert ("ServiceAccount", pod["serviceAccountName"]) in kinds, who
        assert pod.get("automountServiceAccountToken") is False, who
        for name, key in secret_refs(pod):
            assert name in secrets, f"{who} uses Secret {name}, which the README omits"
            assert key is None or key in secrets[name], f"{who}: key {key} of {name}"
        for name in configmap_refs(pod) - {n for k, n in kinds if k == "ConfigMap"}:
            paths = value_paths(values, name)
            assert any(f"`{p}`" in readme for p in paths), f"{who} uses ConfigMap {name} ({paths}): README?"
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        name = pdb["metadata"]["name"]
        pods = api.items(resource_path("Pod", ns) + selector(pdb["spec"]["selector"]))
        assert pods, f"PodDisruptionBudget {name} selects no pod"
        wait_until(lambda n=name, want=len(pods): api.get(resource_path("PodDisruptionBudget", ns, n)).get(
            "status", {}).get("expectedPods") == want, 30, f"the disruption controller to count {name}")
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selectors = [policy["spec"]["podSelector"]] + [
            peer["podSelector"] for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", []) if "podSelector" in peer and "namespaceSelector" not in peer]
        for sel in selectors:
            pods = api.items(resource_path("Pod", ns) + selector(sel))
            assert pods, f"NetworkPolicy {policy['metadata']['name']}: {sel} selects no pod"


def leftovers(api: KubeApi, ns: str, operators: set[str]) -> set[tuple[str, str]]:
    """What is in the namespace besides its basics and the operator's own Secrets."""
    found = {(kind, o["metadata"]["name"]) for kind in LEFTOVER_KINDS
             for o in api.items(resource_path(kind, ns))}
    return found - NAMESPACE_BASICS - {("Secret", s) for s in operators}


def kept_volumes(objects: list[dict]) -> set[tuple[str, str]]:
    """The claims the StatefulSets' volumeClaimTemplates made: what the chart documents as kept."""
    return {("PersistentVolumeClaim", f"{t['metadata']['name']}-{s['metadata']['name']}-{i}")
            for s in objects if s["kind"] == "StatefulSet"
            for t in s["spec"].get("volumeClaimTemplates", []) for i in range(s["spec"]["replicas"])}


def run_hooks(helm: Helm, api: KubeApi, ns: str) -> list[dict]:
    """The release's hook Jobs, created as helm would create them, until the Job controller has made
    their pods (no kubelet runs them, so helm, which waits for a hook to finish, is run with
    --no-hooks); returns them as stored, after deleting them again."""
    hooks = [d for d in yaml.safe_load_all(helm("get", "hooks", "cg", "-n", ns).stdout) if d]
    assert all(h["kind"] == "Job" for h in hooks), [h["kind"] for h in hooks]
    for job in hooks:
        api.request("POST", resource_path("Job", ns), job)

    def pods_made() -> bool:
        refused = refusals(api, ns)
        assert not refused, "the API server refused hook pods:\n" + "\n".join(refused)
        return all(api.items(resource_path("Pod", ns) + selector(
            {"matchLabels": {"batch.kubernetes.io/job-name": j["metadata"]["name"]}})) for j in hooks)

    wait_until(pods_made, 60, "the hook Jobs' pods")
    found = stored(api, ns, hooks)
    for job in hooks:
        api.request("DELETE", resource_path("Job", ns, job["metadata"]["name"]),
                    {"propagationPolicy": "Background"})
    return found


def install(helm: Helm, api: KubeApi, ns: str, files: list[str]) -> tuple[list[dict], dict[str, set[str]]]:
    """Create the documented Secrets, install with no warning; the stored objects and the Secrets."""
    secrets = create_documented_secrets(api, ns, values_of(files))
    done = helm("install", "cg", str(CHART), "-n", ns, "--no-hooks", *files)
    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    return stored(api, ns, helm.manifest("cg", ns)) + run_hooks(helm, api, ns), secrets


@pytest.mark.parametrize("values_file", VALUES)
def test_install_upgrade_rollback_uninstall(values_file: str, control_plane: ControlPlane, helm: Helm,
                                            tmp_path: Path) -> None:
    api = control_plane.api
    ns = restricted_namespace(api, f"cg-{values_file}")
    files = VALUES[values_file]
    first, secrets = install(helm, api, ns, files)
    wait_for_pods(api, ns, first)
    assert_references_hold(api, ns, first, secrets, values_of(files))
    assert_settings_fit(first, values_file)

    changes = tmp_path / "upgrade.yaml"
    upgrade, rotated = upgrade_values(values_of(files), values_file)
    assert len(rotated) >= 4, f"the chart has fewer Secrets to rotate than expected: {rotated}"
    changes.write_text(yaml.safe_dump(upgrade))
    upgraded_files = [*files, "-f", str(changes)]
    secrets = {**secrets, **create_documented_secrets(api, ns, values_of(upgraded_files))}
    helm("upgrade", "cg", str(CHART), "-n", ns, "--no-hooks", *upgraded_files)
    second = stored(api, ns, helm.manifest("cg", ns)) + run_hooks(helm, api, ns)
    wait_for_pods(api, ns, second, rollout=True)
    after = snapshot(second)
    assert after["Deployment/cg-citygrid-worker"]["replicas"] == UPGRADE[values_file]["worker"]["replicas"]
    assert all(i.endswith(":0.2.0") for k, v in after.items() if k.startswith("Deployment/cg-citygrid-")
               and not k.endswith("-mqtt") for i in v["images"]), after
    assert_references_hold(api, ns, second, secrets, values_of(upgraded_files))
    used = set().union(*(secret_refs(pod_spec(o)) for o in second if o["kind"] in WORKLOADS))
    assert rotated <= {name for name, _ in used}, f"still on the old credentials: {rotated - set(used)}"
    assert_settings_fit(second, values_file)

    helm("rollback", "cg", "1", "-n", ns, "--no-hooks")
    back = stored(api, ns, helm.manifest("cg", ns))
    assert snapshot(back) == snapshot([o for o in first if o["kind"] != "Job"])
    wait_for_pods(api, ns, back, rollout=True)
    history = yaml.safe_load(helm("history", "cg", "-n", ns, "-o", "yaml").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"),
                                                               (3, "deployed")]

    helm("uninstall", "cg", "-n", ns, "--no-hooks", "--wait", "--timeout", "60s")
    kept = kept_volumes(first)
    assert kept or values_file == "default"
    deadline = time.monotonic() + 60
    while (left := leftovers(api, ns, set(secrets))) != kept:
        assert time.monotonic() < deadline, f"{ns} holds {sorted(left - kept)}, lacks {kept - left}"
        time.sleep(0.5)


def test_a_pod_running_as_root_is_refused(control_plane: ControlPlane, helm: Helm) -> None:
    """The teeth: values the chart's schema lets through but Pod Security "restricted" forbids."""
    api = control_plane.api
    ns = restricted_namespace(api, "cg-root")
    create_documented_secrets(api, ns, values_of([]))
    done = helm("install", "cg", str(CHART), "-n", ns, "--no-hooks",
                "--set", "podSecurityContext.runAsUser=0")
    warned = [line for line in done.stderr.splitlines() if "would violate PodSecurity" in line]
    assert warned and all("restricted:latest" in w and "runAsUser=0" in w for w in warned), done.stderr
    kinds = {"cg-citygrid-ingest": "StatefulSet", **{f"cg-citygrid-{p}": "Deployment"
                                                       for p in ("worker", "anchorer", "settler")}}
    processes = set(kinds)

    def owner(involved: str) -> str:
        # A StatefulSet's refusal names the StatefulSet; a Deployment's names its ReplicaSet (name-hash).
        return involved if involved in kinds else involved.rsplit("-", 1)[0]

    def refused() -> set[str]:
        return {owner(m.split(":")[0]) for m in refusals(api, ns)
                if "violates PodSecurity" in m and "runAsUser=0" in m}

    wait_until(lambda: refused() >= processes, 60, "the API server to refuse the root pods")
    for name in processes:
        w = api.get(resource_path(kinds[name], ns, name))
        assert not api.items(resource_path("Pod", ns) + selector(w["spec"]["selector"])), name
    # The broker's pod does not run as root, so it is admitted: the refusal is about the root pods only.
    broker = {"matchLabels": {"app.kubernetes.io/instance": "cg", "app.kubernetes.io/component": "mqtt"}}
    wait_until(lambda: len(api.items(resource_path("Pod", ns) + selector(broker))) == 1, 60, "the broker pod")


def test_the_control_plane_takes_only_its_own_clients(control_plane: ControlPlane) -> None:
    """The API server knows no anonymous or unknown client, and etcd only the API server's certificate."""
    api = control_plane.api
    assert api.get("/version")["gitVersion"] == "v1.36.3"  # what helm checks the chart's kubeVersion against
    with pytest.raises(KubeApiError) as refused:
        KubeApi(api.url, "not-a-token", api.ca_file).get("/api/v1/namespaces")
    assert refused.value.status == 401
    pki = control_plane.run_dir / "pki"
    no_cert = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with pytest.raises((ssl.SSLError, OSError)):
        urllib.request.urlopen(f"https://127.0.0.1:{control_plane.ports.etcd}/health", context=no_cert,
                               timeout=5).read()
