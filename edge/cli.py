"""`citygrid edge …` on a device: its key, the agent itself and its health check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from citygrid.edge.drivers import Driver
from citygrid.observability import serve_metrics
from citygrid.settings import CitygridSettings, get_settings
from citygrid.signing import DeviceKey, DeviceRegistry

if TYPE_CHECKING:
    from citygrid.edge.model_update import ModelStore

app = typer.Typer()
console = Console()


@app.command()
def keygen(out: Path = typer.Argument(..., help="Where to write the device's secret key.")) -> None:
    """Create a device key and register its public key; prints the device id."""
    s = get_settings()
    key = DeviceKey.generate()
    key.save(out)
    registry = DeviceRegistry.load(s.paths.device_registry)
    registry.add(key.public_key)
    registry.save(s.paths.device_registry)
    console.print(key.device_id)


def install_release_model(models: ModelStore, model: Path) -> None:
    """Make the model a release ships current on the release's first start (a model that does not load
    stops the agent here, so the release never publishes and the deploy rolls it back); later starts
    of the same release keep whatever model updates installed since."""
    import hashlib

    from citygrid.storage import atomic_write

    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    marker = models.dir / "release-model.sha256"
    if marker.exists() and marker.read_text().strip() == digest:
        return
    models.install(model)
    atomic_write(marker, digest)


def run_agent(s: CitygridSettings, key: Path, outbox: Path, driver_for: Callable[[int], Driver],
              district: str, until_seq: int | None, commit_every: int, with_models: bool,
              release_model: Path | None = None) -> None:
    """Run one agent until its driver ends (or `until_seq`); `driver_for(first_seq)` makes its driver,
    so a restarted device measures on from where it stopped."""
    from citygrid.edge.agent import EdgeAgent
    from citygrid.edge.model_update import ModelStore
    from citygrid.edge.store_forward import Outbox
    from citygrid.mqtt import Publisher
    from citygrid.topics import model_updates_topic

    serve_metrics(s.metrics_port)
    device = DeviceKey.load(key)
    box = Outbox(outbox, s.edge.outbox_max_bytes, s.edge.outbox_full_policy, s.edge.outbox_synchronous)
    driver: Driver = driver_for(box.next_seq())
    pub = Publisher(s.mqtt, client_id=f"edge-{device.device_id}")
    pub.start()
    models = None
    if with_models:
        models = ModelStore(s.paths.models_dir, bytes.fromhex(s.edge.command_public_key),
                            s.edge.intra_op_threads, s.edge.max_model_update_bytes, s.edge.command_max_skew_s)
        if release_model is not None and release_model.exists():
            install_release_model(models, release_model)
    agent = EdgeAgent(device, driver, pub, district, outbox=box, models=models,
                      updates_topic=model_updates_topic(s.edge.model_updates_topic, device.device_id)
                      if models else None,
                      commit_every=commit_every, max_inflight=s.edge.max_inflight)
    limit = None if until_seq is None else max(0, until_seq - agent.next_seq)
    try:
        made = agent.run(limit, drain_timeout_s=3600)
    finally:
        pub.close()
        box.close()
    console.print(f"{made} readings made; next seq {agent.next_seq}; {len(box)} left in the outbox")


@app.command()
def run(key: Path = typer.Option(..., help="The device's key file."),
        outbox: Path = typer.Option(..., help="The outbox database (SQLite, WAL)."),
        modbus: str = typer.Option(..., help="The meter to read over Modbus TCP, HOST:PORT."),
        until_seq: int = typer.Option(None, help="Stop once this many readings exist in total."),
        district: str = typer.Option("d1", help="District in the readings topic."),
        commit_every: int = typer.Option(1, help="Readings per outbox transaction."),
        with_models: bool = typer.Option(False, help="Score with the models in the models directory."),
        release_model: Path = typer.Option(None, help="The model the deployed release ships (if the file "
                                           "exists): made current on the release's first start."),
        ) -> None:
    """Run the device's agent: its meter through the model, outbox and MQTT."""
    from citygrid.edge.modbus_meter import ModbusMeter

    host, port = modbus.rsplit(":", 1)
    run_agent(get_settings(), key, outbox, lambda _first: ModbusMeter(host, int(port)), district,
              until_seq, commit_every, with_models, release_model)


@app.command()
def check(key: Path = typer.Option(..., help="The device's key file.")) -> None:
    """Health check of an installed agent: its key, its runtime libraries and its current model."""
    import onnxruntime  # noqa: F401 - the check is that these import on this device
    import paho.mqtt.client  # noqa: F401
    import pymodbus  # noqa: F401

    import citygrid
    from citygrid.edge.model_update import ModelStore

    s = get_settings()
    device = DeviceKey.load(key)
    model = ModelStore(s.paths.models_dir).current() if s.paths.models_dir.exists() else None
    using = f"{model.name} {model.version}" if model else "none"
    where = Path(citygrid.__file__).parent
    console.print(f"device {device.device_id} ok; model {using}; citygrid from {where}")
