"""The Helm chart: lint, render and schema-validate every manifest for both values files."""

from __future__ import annotations

import json

import kubernetes_validate
import yaml


def test_lint(chart, values_file: str) -> None:
    result = chart.helm("lint", "--strict", str(chart.dir), "--kube-version", chart.kube,
                        *chart.values[values_file], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_is_schema_valid(chart, manifests: tuple[str, list[dict]]) -> None:
    _, docs = manifests
    assert len(docs) > 20
    for doc in docs:
        kubernetes_validate.validate(doc, chart.kube, strict=True)


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "StatefulSet")}


def test_workloads_are_locked_down(manifests: tuple[str, list[dict]]) -> None:
    pods = _pod_specs(manifests[1])
    assert {n.removeprefix("cg-citygrid-") for n in pods} == {
        "mqtt", "kafka", "ingest", "worker", "anchorer", "settler", "advisor"}
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            assert "readinessProbe" in c and "livenessProbe" in c, name
            if "kafka" not in name:  # Kafka's start script writes its config under /opt/kafka
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_every_workload_has_a_disruption_budget(manifests: tuple[str, list[dict]]) -> None:
    docs = manifests[1]
    budgets = {tuple(sorted(d["spec"]["selector"]["matchLabels"].items()))
               for d in docs if d["kind"] == "PodDisruptionBudget"}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            labels = tuple(sorted(d["spec"]["selector"]["matchLabels"].items()))
            assert labels in budgets, d["metadata"]["name"]


def test_single_instance_processes_and_secrets(manifests: tuple[str, list[dict]]) -> None:
    deployments = {d["metadata"]["name"]: d for d in manifests[1] if d["kind"] == "Deployment"}
    for name in ("anchorer", "settler", "mqtt", "advisor"):
        d = deployments[f"cg-citygrid-{name}"]
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate", name
    for name in ("anchorer", "settler"):
        env = deployments[f"cg-citygrid-{name}"]["spec"]["template"]["spec"]["containers"][0]["env"]
        signer = next(e for e in env if e["name"] == "CITYGRID_CHAIN__SIGNER_URI")
        assert "secretKeyRef" in signer["valueFrom"]  # never a literal key in the manifest


def test_ingest_instances_each_read_their_own_identity(chart, manifests: tuple[str, list[dict]]) -> None:
    values, docs = manifests
    ingest = next(d for d in docs if d["metadata"]["name"] == "cg-citygrid-ingest"
                  and d["kind"] not in ("Service", "PodDisruptionBudget"))
    assert ingest["kind"] == "StatefulSet"
    # Production: the instances the scale benchmark projected (benchmarks/scale.py writes them there).
    production = yaml.safe_load((chart.dir / "ci" / "production-values.yaml").read_text())
    assert ingest["spec"]["replicas"] == (production["ingest"]["replicas"] if values == "production" else 2)
    assert ingest["spec"]["podManagementPolicy"] == "Parallel"
    pod = ingest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    # Pod k's index comes from the StatefulSet's own label; its file is ingest-k.json of the Secret.
    index = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.labels['apps.kubernetes.io/pod-index']"
    creds = env["CITYGRID_MQTT__CREDENTIALS_FILE"]["value"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "ingest-identity")
    assert creds == f"{mount['mountPath']}/ingest-$(POD_INDEX).json" and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "ingest-identity")
    assert volume["secret"] == {"secretName": "citygrid-ingest-mqtt", "defaultMode": 0o440}
    # No MQTT password in the environment, not even by reference: the file is the only source.
    assert not any(name.startswith(("CITYGRID_MQTT__USERNAME", "CITYGRID_MQTT__PASSWORD")) for name in env)
    five = next(d for d in chart.render("--set", "ingest.replicas=5")
                if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "cg-citygrid-ingest")
    assert five["spec"]["replicas"] == 5
    assert chart.template("--set", "ingest.replicas=0", check=False).returncode != 0


def test_workers_follow_partitions(chart) -> None:
    worker = next(d for d in chart.render("--set", "kafka.partitions=7")
                  if d["kind"] == "Deployment" and d["metadata"]["name"] == "cg-citygrid-worker")
    assert worker["spec"]["replicas"] == 7
    result = chart.template("--set", "kafka.partitions=2", "--set", "worker.replicas=3", check=False)
    assert result.returncode != 0 and "exceeds kafka.partitions" in result.stderr


def test_chain_endpoint_is_a_value_and_validated(chart) -> None:
    config = next(d for d in chart.render("--set", "chain.url=wss://node.example:443")
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cg-citygrid-config")
    assert config["data"]["CITYGRID_CHAIN__URL"] == "wss://node.example:443"
    assert config["data"]["CITYGRID_METRICS_HOST"] == "0.0.0.0"
    bad = chart.template("--set", "chain.url=http://x", check=False)
    assert bad.returncode != 0 and "chain/url" in bad.stderr


def test_dashboards_are_sidecar_configmaps(chart) -> None:
    maps = [d for d in chart.render()
            if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    committed = {p.name: json.loads(p.read_text())
                 for p in (chart.root / "dashboards" / "json").glob("*.json")}
    assert len(maps) == len(committed) == 5
    for m in maps:
        ((file, text),) = m["data"].items()
        assert json.loads(text) == committed[file]
        assert m["metadata"]["annotations"]["grafana_folder"] == "citygrid"


def _containers(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"].removeprefix("cg-citygrid-"): c
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")
            for c in d["spec"]["template"]["spec"]["containers"]}


def test_only_the_advisor_holds_the_command_key_and_only_as_a_file(manifests: tuple[str, list[dict]]) -> None:
    docs = manifests[1]
    pods = _pod_specs(docs)
    holders = {name for name, pod in pods.items() for v in pod["volumes"]
               if v.get("secret", {}).get("secretName") == "citygrid-command-key"}
    assert holders == {"cg-citygrid-advisor"}
    volume = next(v for v in pods["cg-citygrid-advisor"]["volumes"] if v["name"] == "command-key")
    assert volume["secret"]["defaultMode"] == 0o440  # the pod's group (fsGroup) only
    advisor = _containers(docs)["advisor"]
    env = {e["name"]: e for e in advisor["env"]}
    key_file = env["CITYGRID_TRAFFIC__COMMAND_KEY_FILE"]["value"]
    mount = next(m for m in advisor["volumeMounts"] if m["name"] == "command-key")
    assert key_file == f"{mount['mountPath']}/command.key" and mount["readOnly"] is True
    for name in ("CITYGRID_MQTT__USERNAME", "CITYGRID_MQTT__PASSWORD", "CITYGRID_MQTT__CLIENT_ID"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "citygrid-advisor-mqtt", name
    # No process gets the key (or any MQTT password) as a literal value.
    for name, c in _containers(docs).items():
        for e in c.get("env", []):
            secret = e["name"].endswith(("PASSWORD", "SIGNER_URI", "STATE_KEY"))
            assert not (secret and "value" in e), (name, e)


def test_devices_command_public_key_is_in_the_config(chart) -> None:
    key = "ab" * 32
    config = next(d for d in chart.render("--set", f"commands.publicKey={key}")
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cg-citygrid-config")
    assert config["data"]["CITYGRID_EDGE__COMMAND_PUBLIC_KEY"] == key
    bad = chart.template("--set", "commands.publicKey=not-hex", check=False)
    assert bad.returncode != 0 and "publicKey" in bad.stderr
    assert chart.template("--set", "advisor.enabled=false").returncode == 0
