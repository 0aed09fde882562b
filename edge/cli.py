"""`citygrid edge …`: device keys, simulated devices, the agent itself, models and deployment."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from citygrid.edge.fleet import provision, replay_fleet
from citygrid.local_servers import repo_root
from citygrid.observability import serve_metrics
from citygrid.settings import get_settings
from citygrid.signing import DeviceKey, DeviceRegistry

app = typer.Typer(help="Edge devices: keys, agent, models, deployment.", no_args_is_help=True)
console = Console()


@app.command()
def keygen(out: Path = typer.Argument(..., help="Where to write the device's secret key.")) -> None:
    """Create a device key and register its public key; prints the device id."""
    s = get_settings()
    key = DeviceKey.generate()
    key.save(out)
    registry = DeviceRegistry.load(s.device_registry)
    registry.add(key.public_key)
    registry.save(s.device_registry)
    console.print(key.device_id)


@app.command()
def replay(devices: int = typer.Option(6, help="How many simulated devices."),
           steps: int = typer.Option(16, help="Quarter-hours each replays.")) -> None:
    """Replay SimBench load and PV profiles from simulated, signed devices over MQTT."""
    s = get_settings()
    fleet = provision(s.data_dir, s.device_registry, repo_root() / ".cache", devices)
    sent = replay_fleet(s, fleet, steps)
    console.print(f"{sent} readings published from {len(fleet)} devices")


@app.command()
def run(key: Path = typer.Option(..., help="The device's key file."),
        outbox: Path = typer.Option(..., help="The outbox database (SQLite, WAL)."),
        profile: int = typer.Option(0, help="Which SimBench meter profile this device replays."),
        start_ms: int = typer.Option(0, help="Timestamp of sequence number 0 (default: 20 days ago)."),
        until_seq: int = typer.Option(None, help="Stop once this many readings exist in total."),
        district: str = typer.Option("d1", help="District in the readings topic."),
        commit_every: int = typer.Option(1, help="Readings per outbox transaction."),
        with_models: bool = typer.Option(False, help="Score with the models in settings' models_dir."),
        modbus: str = typer.Option(None, help="Read a Modbus TCP meter at HOST:PORT instead of replaying."),
        ) -> None:
    """Run one agent: replay a real meter profile through the model, outbox and MQTT."""
    from citygrid.edge.agent import EdgeAgent
    from citygrid.edge.drivers import ProfileReplay
    from citygrid.edge.model_update import ModelStore
    from citygrid.edge.profiles import STEP_S, load_profiles
    from citygrid.edge.publisher import Publisher
    from citygrid.edge.store_forward import Outbox

    s = get_settings()
    serve_metrics(s.metrics_port)
    device = DeviceKey.load(key)
    box = Outbox(outbox, s.edge.outbox_max_bytes, s.edge.outbox_full_policy, s.edge.outbox_synchronous)
    first = box.next_seq()
    if modbus:
        from citygrid.edge.modbus_meter import ModbusMeter

        host, port = modbus.rsplit(":", 1)
        driver = ModbusMeter(host, int(port))
    else:
        start_ms = start_ms or int(time.time() * 1000) - 20 * 86400 * 1000
        meters = [p for p in load_profiles(repo_root() / ".cache") if p.kind == "meter"]
        # A restarted device measures from where the killed one stopped, on the same clock.
        driver = ProfileReplay(meters[profile % len(meters)], start_ms + first * STEP_S * 1000, first)
    pub = Publisher(s.mqtt, client_id=f"edge-{device.device_id}")
    pub.start()
    models = None
    if with_models:
        models = ModelStore(s.edge.models_dir, bytes.fromhex(s.edge.operator_public_key),
                            s.edge.intra_op_threads)
    agent = EdgeAgent(device, driver, pub, district, outbox=box, models=models,
                      updates_topic=f"{s.edge.model_updates_topic}/{device.device_id}" if models else None,
                      commit_every=commit_every, max_inflight=s.edge.max_inflight)
    limit = None if until_seq is None else max(0, until_seq - agent.next_seq)
    try:
        made = agent.run(limit, drain_timeout_s=3600)
    finally:
        pub.close()
        box.close()
    console.print(f"{made} readings made; next seq {agent.next_seq}; {len(box)} left in the outbox")


@app.command()
def train(out: Path = typer.Option(Path(".cache/models"), help="Where the ONNX files go."),
          version: str = typer.Option("1", help="Model version recorded in each reading."),
          trees: int = typer.Option(30, help="Trees per forest.")) -> None:
    """Train the load nowcast and meter anomaly models on real SimBench profiles; export ONNX."""
    from citygrid.edge.train_models import train as train_models

    for name, path in train_models(repo_root() / ".cache", out, version, trees).items():
        console.print(f"{name}: {path}")


@app.command()
def check(key: Path = typer.Option(..., help="The device's key file.")) -> None:
    """Health check of an installed agent: its key, its runtime libraries and its current model."""
    import onnxruntime  # noqa: F401 - the check is that these import on this device
    import paho.mqtt.client  # noqa: F401
    import pymodbus  # noqa: F401

    from citygrid.edge.model_update import ModelStore

    s = get_settings()
    device = DeviceKey.load(key)
    model = None
    if s.edge.models_dir.exists():
        model = ModelStore(s.edge.models_dir).current()
    import citygrid

    using = f"{model.name} {model.version}" if model else "none"
    where = Path(citygrid.__file__).parent
    console.print(f"device {device.device_id} ok; model {using}; citygrid from {where}")


@app.command()
def deploy(devices: Path = typer.Argument(..., help="YAML: a `devices:` list (see citygrid.edge.deploy)."),
           known_hosts: Path = typer.Option(None, help="known_hosts file with the devices' host keys."),
           ) -> None:
    """Install or upgrade the agent on every listed device over SSH; a failed device is rolled back."""
    import yaml

    from citygrid.edge.deploy import Device, deploy_device, release_archive
    from citygrid.edge.errors import DeployError

    s = get_settings()
    spec = yaml.safe_load(devices.read_text())
    archive = release_archive(repo_root())
    env = {k: v for k, v in s.as_env({}).items() if k.startswith(("CITYGRID_MQTT__", "CITYGRID_EDGE__"))}
    failed = 0
    for entry in spec["devices"]:
        d = Device(**{**spec.get("defaults", {}), **entry})
        try:
            console.print(f"{d.name}: release {deploy_device(d, archive, env, known_hosts)}")
        except DeployError as exc:
            failed += 1
            console.print(f"[red]{d.name}: {exc}[/]")
    raise typer.Exit(1 if failed else 0)
