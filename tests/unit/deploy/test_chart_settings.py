"""The chart and the settings agree: every CITYGRID_* variable the chart sets is a real setting, and each
process the chart runs gets every setting it needs to start.

Each citygrid container's environment is rebuilt as Kubernetes would give it (its ConfigMap, then its
own env entries, secrets replaced by a placeholder of the setting's type) and handed to
`CitygridSettings`, exactly as the process would read it at start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from citygrid.settings import CitygridSettings

PREFIX = "CITYGRID_"
# What every citygrid process needs: Kafka, and (the root filesystem is read-only) a data dir on a
# volume; its metrics endpoint is what the pod's probes ask, so it must listen where they look.
# Every process is its own Kafka principal over TLS.
KAFKA = frozenset({"CITYGRID_KAFKA__BOOTSTRAP", "CITYGRID_KAFKA__SECURITY_PROTOCOL",
                   "CITYGRID_KAFKA__USERNAME", "CITYGRID_KAFKA__PASSWORD", "CITYGRID_KAFKA__CA_FILE"})
EVERY_PROCESS = KAFKA | {"CITYGRID_PATHS__DATA_DIR", "CITYGRID_METRICS_PORT", "CITYGRID_METRICS_HOST"}
MQTT = frozenset({"CITYGRID_MQTT__HOST", "CITYGRID_MQTT__PORT", "CITYGRID_MQTT__CA_FILE"})
# A service's own broker identity (the broker refuses anonymous clients).
MQTT_IDENTITY = frozenset({"CITYGRID_MQTT__USERNAME", "CITYGRID_MQTT__PASSWORD"})
SIGNER = frozenset({"CITYGRID_CHAIN__URL", "CITYGRID_CHAIN__SIGNER_URI"})
# The command a container runs (`citygrid <group> <command>`) → the settings it must be given explicitly.
REQUIRED: dict[str, frozenset[str]] = {
    # Each ingest instance reads its own identity from its file of the ingest's Secret (its pod index).
    "stream ingest": EVERY_PROCESS | MQTT | {"CITYGRID_MQTT__CREDENTIALS_FILE",
                                             "CITYGRID_PATHS__DEVICE_REGISTRY"},
    # Workers book only orders signed by the registry's keys, and clear on the market tree it places.
    "stream worker": EVERY_PROCESS | {"CITYGRID_STREAM__STATE_KEY", "CITYGRID_PATHS__PARTICIPANTS"},
    "ledger anchor": EVERY_PROCESS | SIGNER,
    "ledger settle": EVERY_PROCESS | SIGNER | {"CITYGRID_SETTLEMENT__ASSET_ID"},
    # The advisor refuses to start without the command key; its identity is bound to one client id.
    "traffic advisor": EVERY_PROCESS | MQTT | MQTT_IDENTITY | {"CITYGRID_MQTT__CLIENT_ID",
                                                               "CITYGRID_TRAFFIC__COMMAND_KEY_FILE"},
    "kafka grant": KAFKA,  # the setup Job: a one-shot admin client, no state, no metrics
}
ONE_SHOT = frozenset({"kafka grant"})
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")
CHART_BEFORE_THE_FIX = "42c9cf4"  # the chart as it was when the settings were renamed


def setting_field(name: str) -> Any | None:
    """The settings field an environment variable sets (None if it names none), as pydantic-settings
    maps it: CITYGRID_<FIELD> or CITYGRID_<SECTION>__<FIELD>, case-insensitive."""
    if not name.upper().startswith(PREFIX):
        return None
    top, _, sub = name[len(PREFIX):].lower().partition("__")
    field = CitygridSettings.model_fields.get(top)
    section = field.annotation if field else None
    is_section = isinstance(section, type) and issubclass(section, BaseModel)
    if not sub:
        return None if is_section else field
    return section.model_fields.get(sub) if is_section and "__" not in sub else None


def placeholder(name: str) -> str:
    """A value of the right type for a variable whose real value is in a Secret."""
    field = setting_field(name)
    text = str(field.annotation) if field else ""
    for kind, value in (("dict", "{}"), ("list", "[]"), ("int", "1"), ("float", "1.0"), ("bool", "false")):
        if text.startswith((kind, f"<class '{kind}")):
            return value
    return "//secret-from-a-kubernetes-secret"


def container_env(container: dict, configmaps: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment Kubernetes gives a container: envFrom first, its own env entries over it, each
    value's $(NAME) replaced by an earlier entry's value as Kubernetes does (a pod field: "fieldref")."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom {source} hides what it sets"
        env.update(configmaps[source["configMapRef"]["name"]])
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        ref = source.get("configMapKeyRef")
        value = (re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), str(entry["value"]))
                 if "value" in entry else configmaps[ref["name"]][ref["key"]] if ref
                 else "fieldref" if "fieldRef" in source else placeholder(entry["name"]))
        env[entry["name"]] = value
    return env


def _identity_file() -> str:
    """A broker credentials file of the right form, standing in for one mounted from a Secret."""
    path = Path(tempfile.mkdtemp(prefix="chart-identity-")) / "identity.json"
    path.write_text(json.dumps({"username": "u", "password": "p", "client_id": "u"}))
    return str(path)


def settings_from(env: dict[str, str]) -> CitygridSettings:
    """The settings a process with exactly this CITYGRID_* environment reads at start."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.upper().startswith(PREFIX)]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        return CitygridSettings(_env_file=None)


def command_of(args: list[str]) -> str:
    """`citygrid --log-level INFO stream ingest` → "stream ingest" (the options before it skipped)."""
    words, skip = [], False
    for arg in args:
        if skip or arg.startswith("-"):
            skip = arg == "--log-level"
            continue
        words.append(arg)
    return " ".join(words[:2])


def _under_mount(path: Path, container: dict, writable: bool) -> bool:
    return any(PurePosixPath(path).is_relative_to(m["mountPath"]) and not (writable and m.get("readOnly"))
               for m in container.get("volumeMounts", []))


def _start_problems(container: dict, s: CitygridSettings) -> list[str]:
    """What keeps a container from starting although its settings are valid."""
    problems = []
    if s.kafka.ca_file is not None and not _under_mount(s.kafka.ca_file, container, writable=False):
        problems.append(f"its Kafka CA {s.kafka.ca_file} is on no volume")
    if command_of(container.get("args", [])) in ONE_SHOT:
        return problems
    if not _under_mount(s.paths.data_dir, container, writable=True):
        problems.append(f"its data dir {s.paths.data_dir} is on no writable volume (the root is read-only)")
    command = command_of(container.get("args", []))
    if command == "stream ingest" and not _under_mount(s.paths.device_registry, container, writable=False):
        problems.append(f"its device registry {s.paths.device_registry} is on no volume")
    needs_mqtt = REQUIRED.get(command, frozenset()) >= MQTT
    if needs_mqtt and not _under_mount(s.mqtt.ca_file, container, writable=False):
        problems.append(f"its MQTT CA {s.mqtt.ca_file} is on no volume")
    key = s.traffic.command_key_file
    if command == "traffic advisor" and (key is None or not _under_mount(key, container, writable=False)):
        problems.append(f"its command key {key} is on no volume")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("metrics") != s.metrics_port:
        problems.append(f"it serves metrics on {s.metrics_port}, its probes ask port {ports.get('metrics')}")
    return problems


def env_problems(container: dict, env: dict[str, str]) -> list[str]:
    """Why a citygrid container would not start with this environment (empty if it would)."""
    command = command_of(container.get("args", []))
    problems = [f"sets {n}, which is no setting" for n in sorted(env)
                if n.upper().startswith(PREFIX) and setting_field(n) is None]
    if command not in REQUIRED:
        problems.append(f"runs `citygrid {command}`, whose needs REQUIRED does not list")
    problems += [f"`{command}` needs {n}, not set" for n in sorted(REQUIRED.get(command, set()) - set(env))]
    if creds := env.get("CITYGRID_MQTT__CREDENTIALS_FILE"):
        # Read at start: it must be on a volume (a Secret's); the settings read a stand-in.
        if not _under_mount(Path(creds), container, writable=False):
            problems.append(f"its MQTT credentials file {creds} is on no volume")
        env = {**env, "CITYGRID_MQTT__CREDENTIALS_FILE": _identity_file()}
    try:
        # Unknown names are reported above; the rest must still make valid settings.
        s = settings_from({n: v for n, v in env.items()
                           if not (n.upper().startswith(PREFIX) and setting_field(n) is None)})
    except ValidationError as exc:
        return [*problems, "settings refuse its environment: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())]
    return problems + _start_problems(container, s)


def pod_spec(doc: dict) -> dict:
    """The pod template of a workload (a CronJob's is one level deeper)."""
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]["spec"]


def runs_citygrid(container: dict) -> bool:
    """Whether a container runs the citygrid image (whatever registry it comes from)."""
    return container["image"].split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[-1] == "citygrid"


def chart_problems(docs: list[dict]) -> dict[str, list[str]]:
    """workload/container → its problems, for every citygrid container of the rendered chart."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    found = {}
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        pod = pod_spec(doc)
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            if runs_citygrid(c):
                env = container_env(c, configmaps)
                found[f"{doc['metadata']['name']}/{c['name']}"] = env_problems(c, env)
    return found


def test_every_process_gets_real_settings_and_all_it_needs(manifests: tuple[str, list[dict]]) -> None:
    values, docs = manifests
    found = chart_problems(docs)
    assert {name.split("/")[0].removeprefix("cg-citygrid-") for name in found} == {
        "ingest", "worker", "anchorer", "settler", "advisor", "kafka-setup"}
    bad = {name: problems for name, problems in found.items() if problems}
    assert not bad, f"{values} values: " + "\n".join(f"{n}: {'; '.join(p)}" for n, p in bad.items())


def test_the_settlers_optional_values_are_real_settings(chart) -> None:
    docs = chart.render("--set", "settler.gridOperator=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    settler = chart_problems(docs)["cg-citygrid-settler/settler"]
    assert settler == []
    env = next(c["env"] for d in docs if d["metadata"]["name"] == "cg-citygrid-settler"
               and d["kind"] == "Deployment" for c in pod_spec(d)["containers"])
    assert {e["name"] for e in env} >= {"CITYGRID_SETTLEMENT__GRID_OPERATOR",
                                        "CITYGRID_PATHS__PARTICIPANTS"}


# --- the checker itself: it must catch what the chart did before the settings were renamed -----------

def _settler(env: dict[str, str]) -> dict:
    return {"name": "settler", "image": "citygrid/citygrid:0.1.0", "args": ["--log-level", "INFO", "ledger",
            "settle"], "env": [{"name": n, "value": v} for n, v in env.items()],
            "ports": [{"name": "metrics", "containerPort": 9100}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                             {"name": "registry", "mountPath": "/etc/citygrid/registry", "readOnly": True},
                             {"name": "kafka-ca", "mountPath": "/etc/citygrid/kafka-ca", "readOnly": True}]}


def test_flags_the_old_variable_names_and_the_missing_asset() -> None:
    # The settler's environment as the chart rendered it before the fix.
    old = {"CITYGRID_DATA_DIR": "/data", "CITYGRID_DEVICE_REGISTRY": "/etc/citygrid/registry/devices.json",
           "CITYGRID_METRICS_PORT": "9100", "CITYGRID_METRICS_HOST": "0.0.0.0",
           "CITYGRID_MQTT__HOST": "cg-citygrid-mqtt", "CITYGRID_MQTT__PORT": "1883",
           "CITYGRID_KAFKA__BOOTSTRAP": "cg-citygrid-kafka:9092", "CITYGRID_KAFKA__PARTITIONS": "4",
           "CITYGRID_CHAIN__URL": "ws://node:9944", "CITYGRID_CHAIN__SIGNER_URI": "//secret"}
    problems = env_problems(_settler(old), old)
    assert "sets CITYGRID_DATA_DIR, which is no setting" in problems
    assert "sets CITYGRID_DEVICE_REGISTRY, which is no setting" in problems
    assert "`ledger settle` needs CITYGRID_PATHS__DATA_DIR, not set" in problems
    assert "`ledger settle` needs CITYGRID_SETTLEMENT__ASSET_ID, not set" in problems
    assert any("data dir" in p and "no writable volume" in p for p in problems), problems
    fixed = {**{k: v for k, v in old.items() if k not in ("CITYGRID_DATA_DIR", "CITYGRID_DEVICE_REGISTRY")},
             "CITYGRID_PATHS__DATA_DIR": "/data", "CITYGRID_SETTLEMENT__ASSET_ID": "4242",
             "CITYGRID_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "CITYGRID_KAFKA__USERNAME": "settler",
             "CITYGRID_KAFKA__PASSWORD": "secret", "CITYGRID_KAFKA__CA_FILE": "/etc/citygrid/kafka-ca/ca.crt"}
    assert env_problems(_settler(fixed), fixed) == []


def test_flags_a_removed_setting_and_a_bad_value() -> None:
    env = {"CITYGRID_SETTLEMENT__SETTLER_URI": "//x", "CITYGRID_METRICS_PORT": "not-a-port"}
    problems = env_problems(_settler(env), env)
    assert "sets CITYGRID_SETTLEMENT__SETTLER_URI, which is no setting" in problems
    refused = next(p for p in problems if p.startswith("settings refuse"))
    assert "metrics_port" in refused


def test_field_lookup_and_placeholders() -> None:
    assert setting_field("CITYGRID_PATHS__DATA_DIR") is not None
    assert setting_field("CITYGRID_metrics_port") is not None
    assert setting_field("CITYGRID_PATHS") is None and setting_field("CITYGRID_KAFKA__BOOTSTRAP__X") is None
    assert setting_field("CITYGRID_KEY_ALICE") is None and setting_field("PATH") is None
    assert placeholder("CITYGRID_STREAM__TRAFFIC_KINDS") == "[]"
    assert placeholder("CITYGRID_SETTLEMENT__ASSET_ID") == "1"
    assert command_of(["--log-level", "INFO", "--json-logs", "traffic", "advisor"]) == "traffic advisor"
    assert runs_citygrid({"image": "registry.example/citygrid/citygrid:0.1.0"})
    assert not runs_citygrid({"image": "apache/kafka:3.9.1"})


def test_flags_the_chart_before_the_fix(chart, tmp_path: Path) -> None:
    try:
        archive = subprocess.run(["git", "-C", str(chart.root), "archive", CHART_BEFORE_THE_FIX,
                                  "deploy/helm/citygrid"], capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"needs the git history ({CHART_BEFORE_THE_FIX}): {exc}; clone without --depth")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    old = chart.helm("template", "cg", str(tmp_path / "deploy/helm/citygrid"), "--kube-version", chart.kube)
    found = chart_problems([d for d in yaml.safe_load_all(old.stdout) if d])
    assert "sets CITYGRID_DATA_DIR, which is no setting" in found["cg-citygrid-ingest/ingest"]
    settler = found["cg-citygrid-settler/settler"]
    assert "`ledger settle` needs CITYGRID_SETTLEMENT__ASSET_ID, not set" in settler


def test_flags_an_advisor_without_its_identity_or_key(chart) -> None:
    docs = chart.render()
    advisor = next(d for d in docs
                   if d["metadata"]["name"] == "cg-citygrid-advisor" and d["kind"] == "Deployment")
    container = pod_spec(advisor)["containers"][0]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    assert env_problems(container, container_env(container, configmaps)) == []
    bare = {**container, "env": [e for e in container["env"] if not e["name"].startswith(
        ("CITYGRID_MQTT__", "CITYGRID_TRAFFIC__COMMAND_KEY_FILE"))]}
    problems = env_problems(bare, container_env(bare, configmaps))
    for name in ("CITYGRID_MQTT__USERNAME", "CITYGRID_MQTT__PASSWORD", "CITYGRID_MQTT__CLIENT_ID",
                 "CITYGRID_TRAFFIC__COMMAND_KEY_FILE"):
        assert f"`traffic advisor` needs {name}, not set" in problems
    mounts = [m for m in container["volumeMounts"] if m["name"] != "command-key"]
    unmounted = {**container, "volumeMounts": mounts}
    assert any("command key" in p for p in env_problems(unmounted, container_env(unmounted, configmaps)))
